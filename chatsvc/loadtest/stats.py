# -*- test-case-name: tests.test_loadtest -*-
"""
Results of a load test: HDR histograms, counters, and their merge across
load processes.

Each load process keeps its latencies in plain dicts (see
L{chatsvc.loadtest.bot.Counters}) and moves them into HDR histograms once a
second (L{drain_counts}); it reports a L{Tick} every second and one
L{WorkerResult} at the end, both plain data that pickles across a pipe. The
parent adds them up with L{merge} into a L{Summary}, which L{Summary.to_json}
writes out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from hdrh.histogram import HdrHistogram

from chatsvc.client.render import RESULTS, describe_result
from chatsvc.loadtest.accounting import SentLog, count_lost
from chatsvc.protocol import PacketId

#: Latencies are recorded in microseconds, from 1 us to one hour.
LOWEST_US: Final = 1
HIGHEST_US: Final = 3_600_000_000
SIGNIFICANT_DIGITS: Final = 3
PERCENTILES: Final = (50.0, 90.0, 99.0, 99.9)

_REQUESTS: Final = {
    PacketId.LOGIN_RESPONSE: "login",
    PacketId.ROOM_ENTER_RESPONSE: "enter",
    PacketId.ROOM_LEAVE_RESPONSE: "leave",
    PacketId.ROOM_CHAT_RESPONSE: "chat",
}


def new_histogram() -> HdrHistogram:
    """
    Return an empty latency histogram (microseconds, 3 significant digits).
    """
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def drain_counts(counts: dict[int, int], *histograms: HdrHistogram) -> None:
    """
    Record C{counts} (microseconds -> how many) into every histogram, and
    empty C{counts}.
    """
    for value, count in counts.items():
        value = min(value, HIGHEST_US)
        for histogram in histograms:
            histogram.record_value(value, count)
    counts.clear()


def encode(histogram: HdrHistogram) -> str:
    """
    Return a histogram in the HdrHistogram compressed base64 form.
    """
    return bytes(histogram.encode()).decode("ascii")


def decode(encoded: str | None) -> HdrHistogram:
    """
    Return the histogram L{encode} made (an empty one for L{None}).
    """
    histogram = new_histogram()
    if encoded:
        histogram.add(HdrHistogram.decode(encoded.encode("ascii")))
    return histogram


def merge_histograms(encoded: Iterable[str | None]) -> HdrHistogram:
    """
    Return the sum of several encoded histograms.
    """
    total = new_histogram()
    for one in encoded:
        if one:
            total.add(HdrHistogram.decode(one.encode("ascii")))
    return total


def latency_ms(histogram: HdrHistogram) -> dict[str, float | int | None]:
    """
    Return count, min, mean, percentiles and max of a histogram, in ms.
    """
    count = histogram.get_total_count()
    summary: dict[str, float | int | None] = {"count": count}
    if not count:
        for key in ("min", "mean", *map(_pkey, PERCENTILES), "max"):
            summary[key] = None
        return summary
    summary["min"] = histogram.get_min_value() / 1000
    summary["mean"] = round(histogram.get_mean_value() / 1000, 3)
    for p in PERCENTILES:
        summary[_pkey(p)] = histogram.get_value_at_percentile(p) / 1000
    summary["max"] = histogram.get_max_value() / 1000
    return summary


def _pkey(percentile: float) -> str:
    text = f"{percentile:g}".replace(".", "_")
    return f"p{text}"


@dataclass
class Tick:
    """
    One second of one load process: its gauges and totals so far, and the
    latencies recorded during that second.
    """

    worker: int
    elapsed: float
    connected: int
    logged_in: int
    in_room: int
    sent: int
    received: int
    logins: int
    cycles: int
    errors: int
    histogram: str | None


@dataclass
class TrackerReport:
    """
    The correctness bookkeeping of the receivers of one process.
    """

    duplicated: int = 0
    reordered: int = 0
    unexpected: int = 0
    missing: list[tuple[int, int, int]] = field(default_factory=list)
    tails: list[tuple[int, int, int]] = field(default_factory=list)


@dataclass
class WorkerResult:
    """
    Everything one load process measured, as plain data.

    @ivar window: C{seconds}, C{sent} and C{received} in the measured window.
    @ivar login_span_ns: first login sent and last login answered (monotonic
        ns, comparable across processes of one machine), if any.
    """

    worker: int
    bots: int
    loop: str
    parser: str
    connects_ok: int = 0
    connects_failed: int = 0
    first_failure: str | None = None
    open_at_first_failure: int | None = None
    peak_connected: int = 0
    peak_logged_in: int = 0
    peak_in_room: int = 0
    logins: int = 0
    enters: int = 0
    cycles: int = 0
    sent: int = 0
    received: int = 0
    foreign: int = 0
    skipped: int = 0
    window: dict[str, float] = field(default_factory=dict)
    login_span_ns: tuple[int, int] | None = None
    results: dict[tuple[int, int], int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    violation_count: int = 0
    latency: str | None = None
    login_latency: str | None = None
    tracker: TrackerReport = field(default_factory=TrackerReport)
    log: SentLog = field(default_factory=SentLog)
    cpu_seconds: float = 0.0


@dataclass
class Summary:
    """
    The merged result of a run: what C{--json} writes and the table shows.
    """

    scenario: str
    target: str
    config: dict[str, Any]
    environment: dict[str, Any]
    bots: int
    connections: dict[str, Any]
    logins: dict[str, Any]
    counts: dict[str, int]
    window: dict[str, float]
    latency_ms: dict[str, float | int | None]
    correctness: dict[str, int]
    results: list[dict[str, Any]]
    errors: dict[str, int]
    violations: dict[str, Any]
    timeline: list[dict[str, Any]]
    cpu: dict[str, float]
    histograms: dict[str, str]
    interrupted: bool = False
    fatal: str | None = None
    #: packets the machine dropped and TCP segments it retransmitted during
    #: the run (empty where unknown)
    network: dict[str, int] = field(default_factory=dict)

    @property
    def failed_checks(self) -> list[str]:
        """
        Return what makes this run a failure (empty when it passed).
        """
        failures = []
        for name in ("lost", "duplicated", "reordered"):
            if self.correctness[name]:
                failures.append(f"{self.correctness[name]} {name}")
        if self.violations["count"]:
            failures.append(f"{self.violations['count']} protocol violations")
        if self.scenario in ("login", "chat") and self.logins["ok"] < self.bots:
            missing = self.bots - self.logins["ok"]
            failures.append(f"{missing} of {self.bots} bots did not log in")
        if self.scenario == "chat" and self.counts["enters"] < self.bots:
            missing = self.bots - self.counts["enters"]
            failures.append(f"{missing} of {self.bots} bots did not enter their room")
        for row in self.results:
            failures.append(
                f"{row['count']} {row['request']} requests refused:"
                f" {row['description']}"
            )
        errors = sum(self.errors.values())
        if errors:
            failures.append(f"{errors} errors")
        if self.fatal:
            failures.append(self.fatal)
        return failures

    def to_json(self) -> dict[str, Any]:
        """
        Return the summary as JSON-ready data.
        """
        data = asdict(self)
        data["ok"] = not self.failed_checks
        data["failed_checks"] = self.failed_checks
        return data


def describe_request(packet_id: int) -> str:
    """
    Return the request a response id answers (C{"chat"} for 222).
    """
    for request_id, name in _REQUESTS.items():
        if request_id == packet_id:
            return name
    return str(packet_id)


def result_rows(results: Mapping[tuple[int, int], int]) -> list[dict[str, Any]]:
    """
    Return non-zero result codes as rows: request, code, name, count, and
    what the code means for that request (C{description}).
    """
    rows = []
    for (packet_id, code), count in sorted(results.items()):
        name = RESULTS.get(code, ("", ""))[0] or "UNKNOWN"
        rows.append(
            {
                "request": describe_request(packet_id),
                "code": code,
                "name": name,
                "count": count,
                "description": describe_result(code, packet_id),
            }
        )
    return rows


def merge(
    results: Sequence[WorkerResult],
    *,
    scenario: str,
    target: str,
    config: dict[str, Any],
    environment: dict[str, Any],
    timeline: list[dict[str, Any]],
    interrupted: bool = False,
    fatal: str | None = None,
    network: dict[str, int] | None = None,
) -> Summary:
    """
    Add up the results of every load process.
    """
    log = SentLog()
    for result in results:
        log.merge(result.log)
    tracker = TrackerReport()
    missing: list[tuple[int, int, int]] = []
    tails: list[tuple[int, int, int]] = []
    for result in results:
        tracker.duplicated += result.tracker.duplicated
        tracker.reordered += result.tracker.reordered
        tracker.unexpected += result.tracker.unexpected
        missing.extend(result.tracker.missing)
        tails.extend(result.tracker.tails)
    lost = count_lost(missing, tails, log)

    latency = merge_histograms(r.latency for r in results)
    login_latency = merge_histograms(r.login_latency for r in results)
    codes: dict[tuple[int, int], int] = {}
    errors: dict[str, int] = {}
    violations: list[str] = []
    for result in results:
        for key, count in result.results.items():
            codes[key] = codes.get(key, 0) + count
        for kind, count in result.errors.items():
            errors[kind] = errors.get(kind, 0) + count
        violations.extend(result.violations)

    window_seconds = max((r.window.get("seconds", 0.0) for r in results), default=0)
    window_sent = sum(int(r.window.get("sent", 0)) for r in results)
    window_received = sum(int(r.window.get("received", 0)) for r in results)
    window = {
        "seconds": round(window_seconds, 3),
        "sent": window_sent,
        "received": window_received,
        "sent_per_s": _rate(window_sent, window_seconds),
        "received_per_s": _rate(window_received, window_seconds),
    }

    spans = [r.login_span_ns for r in results if r.login_span_ns]
    logins_ok = sum(r.logins for r in results)
    login_seconds = (
        (max(end for _, end in spans) - min(start for start, _ in spans)) / 1e9
        if spans
        else 0.0
    )
    failures = [r for r in results if r.first_failure]
    connections = {
        "ok": sum(r.connects_ok for r in results),
        "failed": sum(r.connects_failed for r in results),
        "peak_open": sum(r.peak_connected for r in results),
        "first_failure": failures[0].first_failure if failures else None,
        "open_at_first_failure": (
            sum(r.open_at_first_failure or 0 for r in failures) if failures else None
        ),
    }
    logins = {
        "ok": logins_ok,
        "peak_logged_in": sum(r.peak_logged_in for r in results),
        "storm_seconds": round(login_seconds, 4),
        "per_s": _rate(logins_ok, login_seconds) if scenario == "login" else None,
        "latency_ms": latency_ms(login_latency),
    }
    counts = {
        "sent": sum(r.sent for r in results),
        "received": sum(r.received for r in results),
        "enters": sum(r.enters for r in results),
        "peak_in_room": sum(r.peak_in_room for r in results),
        "cycles": sum(r.cycles for r in results),
        "skipped": sum(r.skipped for r in results),
    }
    correctness = {
        "lost": lost,
        "duplicated": tracker.duplicated,
        "reordered": tracker.reordered,
        "unexpected": tracker.unexpected,
        "foreign": sum(r.foreign for r in results),
    }
    cpu_seconds = sum(r.cpu_seconds for r in results)
    # Every process measured the same server and machine: take the first.
    measured = [r.window for r in results if r.window.get("machine_busy_seconds")]
    server_cpu = measured[0]["server_cpu_seconds"] if measured else 0.0
    machine = measured[0]["machine_busy_seconds"] if measured else 0.0
    cpu = {
        "load_seconds": round(cpu_seconds, 3),
        "load_pct_of_one_core": _pct(cpu_seconds, window_seconds),
    }
    if measured:
        cpu["server_seconds"] = round(server_cpu, 3)
        cpu["server_pct_of_one_core"] = _pct(server_cpu, window_seconds)
        cpu["other_pct_of_one_core"] = _pct(
            max(machine - server_cpu - cpu_seconds, 0.0), window_seconds
        )
    return Summary(
        scenario=scenario,
        target=target,
        config=config,
        environment=environment,
        bots=sum(r.bots for r in results),
        connections=connections,
        logins=logins,
        counts=counts,
        window=window,
        latency_ms=latency_ms(login_latency if scenario == "login" else latency),
        correctness=correctness,
        results=result_rows(codes),
        errors=dict(sorted(errors.items(), key=lambda item: -item[1])),
        violations={
            "count": sum(r.violation_count for r in results),
            "first": violations[:10],
        },
        timeline=timeline,
        cpu=cpu,
        histograms={"latency": encode(latency), "login": encode(login_latency)},
        interrupted=interrupted,
        fatal=fatal,
        network=network or {},
    )


def _pct(seconds: float, window: float) -> float:
    return round(100 * seconds / window, 1) if window > 0 else 0.0


def _rate(count: float, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


class TimelineBuilder:
    """
    Adds up the per-second ticks of every process into one row a second.

    Rates are each process's own: the change of its totals over the time
    between its ticks, so that processes whose seconds are not aligned with
    the parent's (or a last, partial second) still add up right.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.latest: dict[int, Tick] = {}
        self.pending: list[str] = []
        self.rows: list[dict[str, Any]] = []
        #: whether ticks came since the last row
        self.fresh = False
        self._previous: dict[int, Tick] = {}

    def add(self, tick: Tick) -> None:
        """
        Take one process's tick.
        """
        self.latest[tick.worker] = tick
        self.fresh = True
        if tick.histogram:
            self.pending.append(tick.histogram)

    def row(self, elapsed: float) -> dict[str, Any]:
        """
        Return (and keep) the row for the second that just ended.
        """
        self.fresh = False
        ticks = list(self.latest.values())
        sent_per_s = received_per_s = 0.0
        for tick in ticks:
            before = self._previous.get(tick.worker)
            if before is None:
                seconds = tick.elapsed
                sent, received = tick.sent, tick.received
            else:
                seconds = tick.elapsed - before.elapsed
                sent, received = (
                    tick.sent - before.sent,
                    tick.received - before.received,
                )
            if seconds > 0:
                sent_per_s += sent / seconds
                received_per_s += received / seconds
        self._previous = dict(self.latest)
        histogram = merge_histograms(self.pending)
        self.pending = []
        interval = latency_ms(histogram)
        row = {
            "t": round(elapsed, 3),
            "connected": sum(t.connected for t in ticks),
            "logged_in": sum(t.logged_in for t in ticks),
            "in_room": sum(t.in_room for t in ticks),
            "logins": sum(t.logins for t in ticks),
            "cycles": sum(t.cycles for t in ticks),
            "sent_per_s": round(sent_per_s, 1),
            "received_per_s": round(received_per_s, 1),
            "p50_ms": interval["p50"],
            "p99_ms": interval["p99"],
            "max_ms": interval["max"],
            "latencies": interval["count"],
            "errors": sum(t.errors for t in ticks),
        }
        self.rows.append(row)
        return row
