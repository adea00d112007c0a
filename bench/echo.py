"""
The echo benchmark: what chatsvc's echo stages cost next to plain Twisted and
to asyncio/uvloop, in one command.

    python bench/echo.py [--seconds S] [--connections N] [--rounds R] [--json FILE]

Servers, each its own process started here on a free loopback port:

- ``twisted-echo``: the plainest Twisted echo (``bench/peers/twisted_echo.py``),
  the baseline every ratio is taken against;
- ``chatsvc-echo``: ``twistd -n chatsvc-echo`` (raw, unframed echo);
- ``chatsvc-sendqueue``: ``twistd -n chatsvc-sendqueue`` (decodes packets and
  answers DEV_ECHO through per-session send queues);
- ``asyncio-echo`` and ``uvloop-echo``: the same framing as chatsvc-sendqueue
  on asyncio and on uvloop (``bench/peers/asyncio_echo.py``); the uvloop one
  is skipped when uvloop is not installed.

The chatsvc stages run with ``--max-connections-per-ip 0``: every connection
of the load comes from 127.0.0.1.

Load: ``bench/loadgen.py`` in its own process(es), N connections with DEV_ECHO
packets of each size, one in flight per connection (ping-pong) or ``--depth``
in flight (pipelined). The server is pinned to the first core this process may
use and the load to the others. Every round starts every server and waits
for its port, then runs each scenario against each server in turn (1 s
warm-up, then S seconds measured), so servers alternate A B C A B C, and stops
them all. The table gives the median over rounds, and the ratio to
twisted-echo's median.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import _common
from loadgen import bucket_seconds

LOADGEN = _common.BENCH / "loadgen.py"
BASELINE = "twisted-echo"
CANDIDATE = "chatsvc-sendqueue"
TARGETS = {"pingpong": 0.9, "pipelined": 0.6}
"""The least chatsvc-sendqueue may reach, as a fraction of twisted-echo."""
LAUNCH_ALLOWANCE = 0.3
"""Seconds the load processes get to start before their shared window opens."""


@dataclass(frozen=True)
class Server:
    """
    A server under test: its name, what it is, and its command for a port.
    """

    name: str
    description: str
    command: Callable[[int], list[str]]


@dataclass(frozen=True)
class Scenario:
    """
    One load: a mode, the packets in flight per connection and their size.
    """

    mode: str
    depth: int
    size: int


@dataclass(frozen=True)
class Sample:
    """
    One measurement of one server under one scenario in one round.
    """

    round: int
    server: str
    mode: str
    size: int
    msgs_per_s: float
    p50_ms: float
    p99_ms: float
    load_cpu_pct: float
    server_cpu_pct: float
    other_cpu_pct: float
    errors: int
    first_error: str
    loop: str

    @property
    def msgs_per_cpu_s(self) -> float:
        """
        Messages per second of server CPU time: less sensitive to noise.
        """
        busy = self.server_cpu_pct / 100
        return self.msgs_per_s / busy if busy else 0.0


@dataclass(frozen=True)
class Row:
    """
    The medians over rounds of one server under one scenario.
    """

    server: str
    mode: str
    size: int
    msgs_per_s: float
    p50_ms: float
    p99_ms: float
    load_cpu_pct: float
    server_cpu_pct: float
    other_cpu_pct: float
    msgs_per_cpu_s: float
    spread_pct: float
    ratio: float | None
    cpu_ratio: float | None
    failed: int


# --- servers -----------------------------------------------------------------


def twistd_command(plugin: str) -> Callable[[int], list[str]]:
    """
    Return the command line of a chatsvc twistd plugin for a port.
    """

    def command(port: int) -> list[str]:
        return [
            *_common.twistd_command(),
            "-n",
            "--pidfile=",
            plugin,
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--max-connections-per-ip",
            "0",
        ]

    return command


def peer_command(script: str, *extra: str) -> Callable[[int], list[str]]:
    """
    Return the command line of a peer server in ``bench/peers`` for a port.
    """

    def command(port: int) -> list[str]:
        return [
            sys.executable,
            str(_common.PEERS / script),
            "--port",
            str(port),
            *extra,
        ]

    return command


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def all_servers() -> tuple[list[Server], list[str]]:
    """
    Return the servers this machine can run, and notes on those it cannot.
    """
    servers = [
        Server(
            BASELINE,
            "plain Twisted echo: transport.write(data)",
            peer_command("twisted_echo.py"),
        ),
        Server(
            "chatsvc-echo",
            "twistd chatsvc-echo: raw echo with flow control",
            twistd_command("chatsvc-echo"),
        ),
        Server(
            CANDIDATE,
            "twistd chatsvc-sendqueue: framed, per-session send queues",
            twistd_command("chatsvc-sendqueue"),
        ),
        Server(
            "asyncio-echo",
            "framed DEV_ECHO echo on asyncio",
            peer_command("asyncio_echo.py"),
        ),
    ]
    notes = []
    if uvloop_installed():
        servers.append(
            Server(
                "uvloop-echo",
                "framed DEV_ECHO echo on uvloop",
                peer_command("asyncio_echo.py", "--uvloop"),
            )
        )
    else:
        notes.append(
            "uvloop-echo skipped: uvloop is not installed (pip install uvloop)"
        )
    return servers, notes


# --- processes ---------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    """
    A server that is running: its process id, its port and its log.
    """

    server: Server
    pid: int
    port: int
    log: Path

    def log_tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(f"    {self.server.name}| {line}" for line in text)


@contextlib.contextmanager
def running(
    server: Server, cores: frozenset[int] | None, nice: int, log_dir: Path
) -> Iterator[Live]:
    """
    Run C{server} on a free port until the block ends.
    """
    port = _common.free_port()
    log = log_dir / f"{server.name}.log"
    with _common.serving(
        server.command(port), port, cores, nice, log, cwd=_common.REPO
    ) as process:
        yield Live(server, process.pid, port, log)


# --- measuring ---------------------------------------------------------------


def shares(total: int, parts: int) -> list[int]:
    """
    Split C{total} connections over C{parts} processes as evenly as possible.
    """
    return [total // parts + (i < total % parts) for i in range(parts)]


def run_load(
    args: argparse.Namespace,
    scenario: Scenario,
    server_pid: int,
    port: int,
    cores: frozenset[int] | None,
) -> list[dict[str, Any]]:
    """
    Run the load processes for one scenario; return their reports.
    """
    start_at = time.time() + LAUNCH_ALLOWANCE + args.warmup
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for connections in shares(args.connections, args.load_procs):
            argv = [
                sys.executable,
                str(LOADGEN),
                "--port",
                str(port),
                "--connections",
                str(connections),
                "--depth",
                str(scenario.depth),
                "--size",
                str(scenario.size),
                "--warmup",
                str(args.warmup),
                "--seconds",
                str(args.seconds),
                "--start-at",
                repr(start_at),
                "--server-pid",
                str(server_pid),
            ]
            processes.append(_common.spawn(argv, cores, args.nice, subprocess.PIPE))
        timeout = LAUNCH_ALLOWANCE + args.warmup + args.seconds + 30
        outputs = [process.communicate(timeout=timeout)[0] for process in processes]
    finally:
        for process in processes:
            _common.stop(process)
    reports = []
    for process, output in zip(processes, outputs, strict=True):
        if not output.strip():
            raise RuntimeError(f"load generator failed ({process.returncode})")
        reports.append(json.loads(output))
    return reports


def percentile(histogram: Counter[int], fraction: float) -> float:
    """
    Return the latency (seconds) below which C{fraction} of the samples fall.
    """
    total = sum(histogram.values())
    if not total:
        return float("nan")
    rank = fraction * total
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket_seconds(bucket)
    return bucket_seconds(max(histogram))


def merge(
    reports: list[dict[str, Any]], round_: int, server: str, scenario: Scenario
) -> Sample:
    """
    Combine the reports of the load processes of one measurement.
    """
    histogram: Counter[int] = Counter()
    for report in reports:
        histogram.update({int(k): n for k, n in report["histogram"].items()})
    first = reports[0]
    seconds = first["seconds"]
    load_cpu = sum(report["cpu_seconds"] for report in reports)
    other = first["machine_busy_seconds"] - first["server_cpu_seconds"] - load_cpu
    return Sample(
        round=round_,
        server=server,
        mode=scenario.mode,
        size=scenario.size,
        msgs_per_s=sum(report["replies"] / report["seconds"] for report in reports),
        p50_ms=percentile(histogram, 0.50) * 1e3,
        p99_ms=percentile(histogram, 0.99) * 1e3,
        load_cpu_pct=100 * load_cpu / seconds,
        server_cpu_pct=100 * first["server_cpu_seconds"] / seconds,
        other_cpu_pct=max(0.0, 100 * other / seconds),
        errors=sum(report["error_count"] for report in reports),
        first_error=next(
            (report["errors"][0] for report in reports if report["errors"]), ""
        ),
        loop=first["loop"],
    )


def describe(sample: Sample) -> str:
    return (
        f"[round {sample.round}] {sample.server:<17} {sample.mode:<9}"
        f" {sample.size:>5} B: {sample.msgs_per_s:>9,.0f} msgs/s"
        f"  p50 {sample.p50_ms:6.2f} ms  p99 {sample.p99_ms:6.2f} ms"
        f"  load {sample.load_cpu_pct:3.0f}%  server {sample.server_cpu_pct:3.0f}%"
        f"  other {sample.other_cpu_pct:3.0f}%"
        + (f"  ERRORS {sample.errors}: {sample.first_error}" if sample.errors else "")
    )


def run_rounds(
    args: argparse.Namespace,
    servers: list[Server],
    scenarios: list[Scenario],
    cores: tuple[frozenset[int] | None, frozenset[int] | None],
    log_dir: Path,
) -> list[Sample]:
    """
    Run every round: start every server, then for each scenario load each
    server in turn (A B C A B C: the servers compared are measured seconds
    apart, so a slow drift of the machine hits them alike), then stop them.
    """
    server_cores, load_cores = cores
    samples = []
    for round_ in range(1, args.rounds + 1):
        with contextlib.ExitStack() as stack:
            live = [
                stack.enter_context(running(server, server_cores, args.nice, log_dir))
                for server in servers
            ]
            for scenario in scenarios:
                for server in live:
                    reports = run_load(
                        args, scenario, server.pid, server.port, load_cores
                    )
                    sample = merge(reports, round_, server.server.name, scenario)
                    print(describe(sample), file=sys.stderr, flush=True)
                    if sample.errors:
                        print(server.log_tail(), file=sys.stderr, flush=True)
                    samples.append(sample)
    return samples


# --- reporting ---------------------------------------------------------------


def _median(samples: list[Sample], value: Callable[[Sample], float]) -> float:
    return statistics.median(map(value, samples)) if samples else float("nan")


def summarize(samples: list[Sample]) -> list[Row]:
    """
    Return the medians over rounds, in the order the samples were taken.

    A sample whose load saw errors (lost connections, wrong replies) is no
    measurement: it is counted in C{failed} and left out of the medians.
    """
    groups: dict[tuple[str, str, int], list[Sample]] = {}
    for sample in samples:
        groups.setdefault((sample.server, sample.mode, sample.size), []).append(sample)
    valid = {key: [s for s in group if not s.errors] for key, group in groups.items()}
    rows = []
    for (server, mode, size), good in valid.items():
        rate = _median(good, lambda s: s.msgs_per_s)
        efficiency = _median(good, lambda s: s.msgs_per_cpu_s)
        base = valid.get((BASELINE, mode, size), [])
        base_rate = _median(base, lambda s: s.msgs_per_s)
        base_efficiency = _median(base, lambda s: s.msgs_per_cpu_s)
        rates = [s.msgs_per_s for s in good]
        rows.append(
            Row(
                server=server,
                mode=mode,
                size=size,
                msgs_per_s=rate,
                p50_ms=_median(good, lambda s: s.p50_ms),
                p99_ms=_median(good, lambda s: s.p99_ms),
                load_cpu_pct=_median(good, lambda s: s.load_cpu_pct),
                server_cpu_pct=_median(good, lambda s: s.server_cpu_pct),
                other_cpu_pct=_median(good, lambda s: s.other_cpu_pct),
                msgs_per_cpu_s=efficiency,
                spread_pct=_common.range_pct(rates),
                ratio=rate / base_rate if base and good else None,
                cpu_ratio=efficiency / base_efficiency if base and good else None,
                failed=len(groups[(server, mode, size)]) - len(good),
            )
        )
    return rows


def mode_label(mode: str, depth: int) -> str:
    return "ping-pong" if mode == "pingpong" else f"pipelined x{depth}"


def table(rows: list[Row], depth: int) -> str:
    """
    Return the rows as a markdown table, grouped by scenario.
    """
    lines = [
        "| server | mode | size | msgs/s | p50 ms | p99 ms | load CPU % |"
        " server CPU % | other CPU % | msgs/server CPU-s | spread |"
        f" x {BASELINE} |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in sorted(rows, key=lambda r: (r.mode != "pingpong", r.size)):
        load = f"{row.load_cpu_pct:.0f}"
        if row.load_cpu_pct >= _common.SATURATED_LOAD_CPU:
            load += " (!)"
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        failed = f" ({row.failed} failed)" if row.failed else ""
        lines.append(
            f"| {row.server}{failed} | {mode_label(row.mode, depth)} | {row.size} B"
            f" | {row.msgs_per_s:,.0f} | {row.p50_ms:.2f} | {row.p99_ms:.2f}"
            f" | {load} | {row.server_cpu_pct:.0f} | {row.other_cpu_pct:.0f}"
            f" | {row.msgs_per_cpu_s:,.0f} | ±{row.spread_pct / 2:.0f}% | {ratio} |"
        )
    return "\n".join(lines)


def paired_ratios(samples: list[Sample], mode: str, size: int) -> list[float]:
    """
    Return chatsvc-sendqueue / twisted-echo for each round that has both.
    """
    rates: dict[tuple[str, int], float] = {
        (s.server, s.round): s.msgs_per_s
        for s in samples
        if s.mode == mode and s.size == size and not s.errors
    }
    rounds = sorted({r for (_, r) in rates})
    return [
        rates[(CANDIDATE, r)] / rates[(BASELINE, r)]
        for r in rounds
        if (CANDIDATE, r) in rates and rates.get((BASELINE, r))
    ]


def target_lines(rows: list[Row], samples: list[Sample], depth: int) -> list[str]:
    """
    Return the verdict on each target that the measured rows can check.
    """
    lines = []
    for row in rows:
        if row.server != CANDIDATE or row.ratio is None:
            continue
        need = TARGETS[row.mode]
        ratios = paired_ratios(samples, row.mode, row.size)
        verdict = "PASS" if row.ratio >= need else "FAIL"
        per_cpu = (
            "" if row.cpu_ratio is None else f"; per server CPU-s {row.cpu_ratio:.2f}x"
        )
        lines.append(
            f"- {CANDIDATE} {mode_label(row.mode, depth)}, {row.size} B:"
            f" {row.ratio:.2f}x {BASELINE} (target ≥ {need}x): **{verdict}**;"
            f" per round {', '.join(f'{r:.2f}' for r in ratios)}{per_cpu}"
        )
    return lines


def report(
    args: argparse.Namespace,
    servers: list[Server],
    rows: list[Row],
    samples: list[Sample],
    notes: list[str],
    pinning: str,
) -> str:
    """
    Return the whole markdown report.
    """
    loops = sorted({s.loop for s in samples})
    lines = [
        f"`{' '.join(['python', 'bench/echo.py', *sys.argv[1:]])}`",
        "",
        f"{args.connections} connections, {args.seconds:g} s measured after"
        f" {args.warmup:g} s warm-up, median of {args.rounds} rounds;"
        f" load: {args.load_procs} process(es) on {', '.join(loops)}; {pinning};"
        f" server and load at niceness {args.nice}.",
        _common.machine_summary(),
        "",
        table(rows, args.depth),
        "",
        *(f"- {server.name}: {server.description}" for server in servers),
        "",
        "CPU % is of one core. other CPU % is what the rest of the machine used"
        " meanwhile (noise). msgs/server CPU-s is msgs/s divided by the server's"
        " CPU share. spread is half the min-max range of msgs/s over rounds."
        " (!) marks a load generator near saturation; (n failed) a server whose"
        " load saw errors in n rounds, left out of the medians.",
    ]
    targets = target_lines(rows, samples, args.depth)
    if targets:
        lines += ["", "Targets:", *targets]
    if notes:
        lines += ["", *(f"Note: {note}" for note in notes)]
    return "\n".join(lines)


# --- command line ------------------------------------------------------------


def csv(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(value: str) -> list[Any]:
        return [kind(item) for item in value.split(",") if item]

    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark chatsvc's echo stages against Twisted and asyncio.",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=3.0,
        help="measured seconds per scenario (default 3)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="warm-up seconds before each measurement (default 1)",
    )
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--depth",
        type=int,
        default=32,
        help="packets in flight per connection when pipelined",
    )
    parser.add_argument(
        "--sizes",
        type=csv(int),
        default=[32, 1024],
        help="packet sizes in bytes, header included (32,1024)",
    )
    parser.add_argument("--modes", type=csv(str), default=["pingpong", "pipelined"])
    parser.add_argument(
        "--servers",
        type=csv(str),
        default=None,
        help="only these servers (comma-separated names)",
    )
    parser.add_argument(
        "--load-procs",
        type=int,
        default=1,
        help="load generator processes sharing the connections",
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin server and load to separate cores",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=-10 if os.geteuid() == 0 else 0,
        help="niceness of server and load processes, to keep"
        " other work on a shared machine from taking their CPU"
        " (default -10 as root, else 0)",
    )
    parser.add_argument("--json", type=Path, help="write every sample here")
    parser.add_argument(
        "--log-dir", type=Path, help="keep the servers' logs here (default: discarded)"
    )
    args = parser.parse_args(argv)
    if not set(args.modes) <= set(TARGETS):
        parser.error(f"--modes: choose from {', '.join(TARGETS)}")
    if not 1 <= args.load_procs <= args.connections:
        parser.error("--load-procs must be 1..connections")
    if args.rounds < 1 or args.seconds <= 0 or args.depth < 1:
        parser.error("--rounds, --seconds and --depth must be positive")
    return args


def select(servers: list[Server], names: list[str] | None) -> list[Server]:
    if names is None:
        return servers
    known = {server.name for server in servers}
    unknown = set(names) - known
    if unknown:
        raise SystemExit(
            f"unknown or unavailable servers: {', '.join(unknown)}"
            f" (known: {', '.join(sorted(known))})"
        )
    return [server for server in servers if server.name in names]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _common.exit_on_signals(signal.SIGTERM, signal.SIGHUP)
    available, notes = all_servers()
    servers = select(available, args.servers)
    scenarios = [
        Scenario(mode, 1 if mode == "pingpong" else args.depth, size)
        for mode in args.modes
        for size in args.sizes
    ]
    server_cores, load_cores, pinning = _common.choose_cores(args.pin)
    if load_cores:
        os.sched_setaffinity(0, load_cores)  # keep ourselves off the server's core
    with _common.log_directory(args.log_dir) as log_dir:
        samples = run_rounds(
            args, servers, scenarios, (server_cores, load_cores), log_dir
        )
    rows = summarize(samples)
    print(report(args, servers, rows, samples, notes, pinning))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "argv": sys.argv,
                    "pinning": pinning,
                    "notes": notes,
                    "rows": [asdict(row) for row in rows],
                    "samples": [asdict(sample) for sample in samples],
                },
                indent=1,
            )
        )
    return 1 if any(row.failed for row in rows) else 0


if __name__ == "__main__":
    _common.run_main(main)
