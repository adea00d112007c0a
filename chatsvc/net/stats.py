"""
Counters of the network layer, kept as plain integers on the hot path and
read by the metrics exporter when it is scraped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class NetStats:
    """
    What one listening stage has seen since it started.

    @ivar packets_in: packets received, by packet id.
    @ivar bytes_in: bytes of those packets (header included), by packet id.
    @ivar bytes_out: bytes handed to transports.
    @ivar protocol_errors: connections closed for bad input, by kind.
    @ivar slow_consumers: connections cut off past the send-queue limit.
    @ivar refused: connections refused above the connection limit.
    @ivar refused_per_ip: connections refused above the per-address limit.
    @ivar idle_timeouts: connections closed for being idle.
    @ivar deadlines_missed: connections closed at a deadline the application
        set (the chat stage: no login in time).
    """

    packets_in: Counter[int] = field(default_factory=Counter)
    bytes_in: Counter[int] = field(default_factory=Counter)
    bytes_out: int = 0
    protocol_errors: Counter[str] = field(default_factory=Counter)
    slow_consumers: int = 0
    refused: int = 0
    refused_per_ip: int = 0
    idle_timeouts: int = 0
    deadlines_missed: int = 0
