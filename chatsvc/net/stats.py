# -*- test-case-name: tests.test_stats -*-
"""
Counters of the network layer, kept as plain integers on the hot path and
read by the metrics exporter when it is scraped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Final

from chatsvc.protocol import HEADER_SIZE, Packet

#: What packets with an id outside L{NetStats.known_ids} are counted under.
UNKNOWN_PACKET: Final = -1

_packet_id = itemgetter(0)


@dataclass(slots=True)
class NetStats:
    """
    What one listening stage has seen since it started.

    @ivar known_ids: the packet ids counted each under its own id; all others
        are counted together under L{UNKNOWN_PACKET}, so that clients cannot
        make the counters (and the metrics) grow.
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

    known_ids: frozenset[int] = frozenset()
    packets_in: Counter[int] = field(default_factory=Counter)
    bytes_in: Counter[int] = field(default_factory=Counter)
    bytes_out: int = 0
    protocol_errors: Counter[str] = field(default_factory=Counter)
    slow_consumers: int = 0
    refused: int = 0
    refused_per_ip: int = 0
    idle_timeouts: int = 0
    deadlines_missed: int = 0

    def received(self, packets: Sequence[Packet], size: int) -> None:
        """
        Count a batch of C{packets} (at least one), C{size} bytes in all.
        """
        known = self.known_ids
        first = packets[0][0]
        count = len(packets)
        if count == 1 or list(map(_packet_id, packets)).count(first) == count:
            key = first if first in known else UNKNOWN_PACKET
            self.packets_in[key] += count
            self.bytes_in[key] += size
            return
        packets_in = self.packets_in
        bytes_in = self.bytes_in
        for packet_id, _, body in packets:
            key = packet_id if packet_id in known else UNKNOWN_PACKET
            packets_in[key] += 1
            bytes_in[key] += HEADER_SIZE + len(body)
