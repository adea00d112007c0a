# -*- test-case-name: tests.test_loadtest -*-
"""
What the bots of one load process count: gauges, totals, result codes,
errors, protocol violations and latencies.
"""

from __future__ import annotations

from typing import Final

#: Latencies are recorded in microseconds, rounded down to 11 significant bits
#: (what an HDR histogram with 3 significant digits keeps anyway).
SIGNIFICANT_BITS: Final = 11


def quantize_us(value: int) -> int:
    """
    Round a latency in microseconds down to what the histogram keeps apart.
    """
    if value < 1 << SIGNIFICANT_BITS:
        return max(value, 0)
    shift = value.bit_length() - SIGNIFICANT_BITS
    return value >> shift << shift


class Counters:
    """
    What the bots of one process add up, updated in place by every bot.

    Latencies are counted in plain dicts (microseconds, quantized) and moved
    into HDR histograms once a second by L{chatsvc.loadtest.stats}: recording
    a value straight into an HDR histogram costs ten times more.
    """

    def __init__(self) -> None:
        self.connected = 0
        self.logged_in = 0
        self.in_room = 0
        self.logins = 0
        self.enters = 0
        self.cycles = 0
        self.sent = 0
        self.received = 0
        self.foreign = 0
        self.skipped = 0
        self.recording = False
        self.latency: dict[int, int] = {}
        self.login_latency: dict[int, int] = {}
        self.results: dict[tuple[int, int], int] = {}
        self.errors: dict[str, int] = {}
        self.violations: list[str] = []
        self.violation_count = 0

    def result(self, packet_id: int, code: int) -> None:
        """
        Count a response whose result is not 0.
        """
        key = (packet_id, code)
        self.results[key] = self.results.get(key, 0) + 1

    def error(self, kind: str) -> None:
        """
        Count an error of some kind (a connection failure, a timeout...).
        """
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def violation(self, text: str) -> None:
        """
        Record a protocol violation by the server (the first few in full).
        """
        self.violation_count += 1
        if len(self.violations) < 20:
            self.violations.append(text)
