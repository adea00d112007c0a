# -*- test-case-name: tests.test_loadtest -*-
"""
What the load tester shows: the progress line, the summary table, the plot.

All of it is made from plain data (timeline rows and a L{Summary}), so it can
be tested without running anything; only L{plot} needs matplotlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from chatsvc.loadtest.stats import Summary, decode

_UNITS: Final = {
    "echo": ("echoes sent", "echoes back"),
    "login": ("logins sent", "logins answered"),
    "chat": ("chat sent", "notifies received"),
    "churn": ("chat sent", "notifies received"),
}


def _ms(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _n(value: float) -> str:
    return f"{value:,.0f}"


def progress_line(row: dict[str, Any], phase: str) -> str:
    """
    Return the one-line state of the run for the second that just ended.
    """
    return (
        f"[{row['t']:5.0f}s {phase:<5}] conn {_n(row['connected'])}"
        f"  login {_n(row['logged_in'])}  room {_n(row['in_room'])}"
        f" | sent {_n(row['sent_per_s'])}/s  recv {_n(row['received_per_s'])}/s"
        f" | p50 {_ms(row['p50_ms'])} ms  p99 {_ms(row['p99_ms'])} ms"
        f" | errors {_n(row['errors'])}"
    )


def _latency_text(latency: dict[str, Any]) -> str:
    if not latency.get("count"):
        return "no samples"
    return (
        f"p50 {_ms(latency['p50'])}  p90 {_ms(latency['p90'])}"
        f"  p99 {_ms(latency['p99'])}  p99.9 {_ms(latency['p99_9'])}"
        f"  max {_ms(latency['max'])} ms  ({_n(latency['count'])} samples)"
    )


def summary_table(summary: Summary) -> str:
    """
    Return the end-of-run table.
    """
    config = summary.config
    scenario = summary.scenario
    environment = summary.environment
    sent_label, received_label = _UNITS[scenario]
    rate = config["rate"]
    load = (
        f"rate {rate:g}/s per user"
        if rate > 0
        else f"closed loop, {config['window']} in flight per user"
    )
    heading = f"chatsvc-bench {scenario} against {summary.target}: {summary.bots} users"
    if scenario in ("chat", "churn"):
        heading += f" in {config['rooms']} rooms from {config['room_start']}"
    if scenario != "login":
        heading += f", {load}"
    heading += (
        f"; {config['procs']} load process{'es' if config['procs'] > 1 else ''}"
        f" on {environment.get('loop')}"
    )
    rows: list[tuple[str, str]] = []
    connections = summary.connections
    text = (
        f"{_n(connections['ok'])} ok, {_n(connections['failed'])} failed,"
        f" {_n(connections['peak_open'])} open at peak"
    )
    if connections["first_failure"]:
        text += (
            f"; first failure with {_n(connections['open_at_first_failure'] or 0)}"
            f" open: {connections['first_failure']}"
        )
    rows.append(("connections", text))
    logins = summary.logins
    if scenario != "echo":
        text = f"{_n(logins['ok'])} ok"
        if logins["per_s"] is not None:
            text += (
                f" in {logins['storm_seconds']:.3f} s = {_n(logins['per_s'])} logins/s"
            )
        text += f"; latency {_latency_text(logins['latency_ms'])}"
        rows.append(("logins", text))
    if scenario in ("chat", "churn"):
        rows.append(
            (
                "rooms",
                f"{_n(summary.counts['enters'])} entered,"
                f" {_n(summary.counts['peak_in_room'])} in rooms at peak",
            )
        )
    window = summary.window
    if scenario == "churn":
        cycles = summary.counts["cycles"]
        per_s = cycles / max(window["seconds"], 1e-9)
        rows.append(("cycles", f"{_n(cycles)} ({_n(per_s)}/s)"))
    if scenario == "login":
        rows.append(("held", f"{config['duration']:g} s after the storm"))
    else:
        rows.append(("measured", f"{window['seconds']:.2f} s"))
        rows.append(
            (sent_label, f"{_n(window['sent'])} ({_n(window['sent_per_s'])}/s)")
        )
        rows.append(
            (
                received_label,
                f"{_n(window['received'])} ({_n(window['received_per_s'])}/s)",
            )
        )
        if summary.counts["skipped"]:
            rows.append(
                (
                    "skipped",
                    f"{_n(summary.counts['skipped'])} messages due while the"
                    " server was not reading",
                )
            )
        rows.append(("latency ms", _latency_text(summary.latency_ms)))
    if scenario != "login":
        correctness = summary.correctness
        for name in ("lost", "duplicated", "reordered", "unexpected"):
            rows.append((name, _n(correctness[name])))
        if correctness["foreign"]:
            rows.append(("foreign", f"{_n(correctness['foreign'])} not from a bot"))
    if summary.results:
        text = ", ".join(
            f"{row['request']} {row['code']} {row['name']}: {_n(row['count'])}"
            for row in summary.results
        )
    else:
        text = "all 0"
    rows.append(("result codes", text))
    if summary.errors:
        text = "; ".join(
            f"{kind}: {_n(count)}" for kind, count in summary.errors.items()
        )
    else:
        text = "none"
    rows.append(("errors", text))
    violations = summary.violations
    rows.append(
        ("violations", _n(violations["count"]) if violations["count"] else "none")
    )
    cpu = summary.cpu
    if cpu["load_seconds"]:
        text = f"load {cpu['load_pct_of_one_core']:.0f}%"
        if "server_pct_of_one_core" in cpu:
            text += (
                f", server {cpu['server_pct_of_one_core']:.0f}%,"
                f" everything else {cpu['other_pct_of_one_core']:.0f}%"
            )
        rows.append(("CPU", text + " of one core, in the window"))
    network = summary.network
    if network:
        text = (
            f"{_n(network['packets_dropped'])} packets dropped,"
            f" {_n(network['tcp_retransmitted'])} TCP segments retransmitted"
            " (whole machine, whole run)"
        )
        if network["packets_dropped"]:
            text += (
                ": latencies include retransmission timeouts;"
                " raise net.core.netdev_max_backlog"
            )
        rows.append(("network", text))
    rows.append(("fd limit", str(environment.get("fd_limit"))))
    failed = summary.failed_checks
    if summary.interrupted:
        rows.append(("note", "interrupted: results cover part of the run"))
    rows.append(("verdict", "PASS" if not failed else "FAIL: " + "; ".join(failed)))
    width = max(len(label) for label, _ in rows)
    lines = [heading, ""]
    lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    for text in violations["first"][:5]:
        lines.append(f"  violation: {text}")
    return "\n".join(lines)


def plot(summary: Summary, path: Path) -> None:
    """
    Draw latency over time and the latency distribution into a PNG.

    @raise ImportError: if matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    histogram = decode(summary.histograms["latency"])
    if summary.scenario == "login":
        histogram = decode(summary.histograms["login"])
    figure, (over_time, spread) = plt.subplots(2, 1, figsize=(10, 8))
    rows = [row for row in summary.timeline if row["p50_ms"] is not None]
    times = [row["t"] for row in rows]
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
        over_time.plot(times, [row[key] for row in rows], marker=".", label=label)
    over_time.set_yscale("log")
    over_time.set_xlabel("seconds since start")
    over_time.set_ylabel("latency (ms)")
    over_time.set_title(f"chatsvc-bench {summary.scenario}: latency per second")
    over_time.legend(loc="upper left")
    rate_axis = over_time.twinx()
    rate_axis.plot(
        [row["t"] for row in summary.timeline],
        [row["received_per_s"] for row in summary.timeline],
        color="grey",
        alpha=0.4,
        label="received/s",
    )
    rate_axis.set_ylabel("received per second")
    rate_axis.legend(loc="upper right")
    percentiles = [0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999, 100]
    if histogram.get_total_count():
        x = [1 / (1 - min(p, 99.9999) / 100) for p in percentiles]
        y = [histogram.get_value_at_percentile(p) / 1000 for p in percentiles]
        spread.plot(x, y, marker="o")
        spread.set_xscale("log")
        spread.set_xticks(x)
        spread.set_xticklabels([f"{p:g}" for p in percentiles], rotation=45)
    spread.set_xlabel("percentile")
    spread.set_ylabel("latency (ms)")
    spread.set_title("latency distribution (HDR histogram, all processes)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
