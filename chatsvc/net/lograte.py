# -*- test-case-name: tests.test_lograte -*-
"""
Warnings that a flood of bad clients cannot turn into a flood of log lines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger, LogLevel

from chatsvc.ratelimit import TokenBucket


class RateLimitedLog:
    """
    Emits at most C{burst} events of one format at once and C{rate} per second
    on average; what it drops is counted and reported with the next event of
    that format that gets through.
    """

    def __init__(
        self,
        log: Logger,
        clock: Callable[[], float],
        rate: float = 1.0,
        burst: int = 10,
    ) -> None:
        self._log = log
        self._clock = clock
        self._rate = rate
        self._burst = burst
        self._buckets: dict[str, TokenBucket] = {}
        self._suppressed: dict[str, int] = {}

    def emit(self, level: LogLevel, format: str, **kwargs: Any) -> None:
        """
        Log C{format} at C{level} unless this format is over its rate.
        """
        now = self._clock()
        bucket = self._buckets.get(format)
        if bucket is None:
            bucket = self._buckets[format] = TokenBucket(self._rate, self._burst, now)
        if not bucket.allow(now):
            self._suppressed[format] = self._suppressed.get(format, 0) + 1
            return
        suppressed = self._suppressed.pop(format, 0)
        if suppressed:
            format += " ({suppressed} similar messages suppressed)"
        self._log.emit(level, format, suppressed=suppressed, **kwargs)

    def warn(self, format: str, **kwargs: Any) -> None:
        """
        Emit a warning, rate-limited.
        """
        self.emit(LogLevel.warn, format, **kwargs)
