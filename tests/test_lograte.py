"""
Tests for L{chatsvc.net.lograte}: a flood of warnings becomes a trickle with
a count of what was dropped.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import Logger, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.net.lograte import RateLimitedLog


class RateLimitedLogTests(SynchronousTestCase):
    def test_flood_is_limited_and_counted(self) -> None:
        clock = Clock()
        log = RateLimitedLog(Logger(), clock.seconds, rate=1, burst=3)
        with capturedLogs() as events:
            for i in range(100):
                log.warn("bad client {n}", n=i)
            clock.advance(1)
            log.warn("bad client {n}", n=100)
        self.assertEqual([e["n"] for e in events], [0, 1, 2, 100])
        self.assertEqual(events[-1]["suppressed"], 97)
        self.assertEqual(
            formatEvent(events[-1]), "bad client 100 (97 similar messages suppressed)"
        )

    def test_formats_limited_separately(self) -> None:
        clock = Clock()
        log = RateLimitedLog(Logger(), clock.seconds, rate=1, burst=1)
        with capturedLogs() as events:
            for _ in range(5):
                log.warn("one")
                log.warn("two")
        self.assertEqual([e["log_format"] for e in events], ["one", "two"])
