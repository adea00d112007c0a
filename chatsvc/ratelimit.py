# -*- test-case-name: tests.test_chat,tests.test_lograte -*-
"""
A token bucket, driven by the caller's clock.
"""

from __future__ import annotations


class TokenBucket:
    """
    Allows C{rate} events per second on average and C{burst} at once.
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = now

    def allow(self, now: float) -> bool:
        """
        Take one token if there is one at time C{now}.
        """
        tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if tokens < 1:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1
        return True
