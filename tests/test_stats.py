"""
Tests for L{chatsvc.net.stats}: packet counters that clients cannot grow.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from chatsvc.net.stats import UNKNOWN_PACKET, NetStats
from chatsvc.protocol import Packet


class ReceivedTests(SynchronousTestCase):
    def test_known_ids_counted_each(self) -> None:
        stats = NetStats(known_ids=frozenset({1, 7}))
        stats.received([Packet(1, 0, b"ab"), Packet(1, 0, b"")], 12)
        stats.received([Packet(7, 0, b"x"), Packet(1, 0, b"abc")], 14)
        self.assertEqual(stats.packets_in, {1: 3, 7: 1})
        self.assertEqual(stats.bytes_in, {1: 20, 7: 6})

    def test_other_ids_counted_together(self) -> None:
        stats = NetStats(known_ids=frozenset({1}))
        for packet_id in range(2, 10_000):
            stats.received([Packet(packet_id, 0, b"")], 5)
        stats.received([Packet(1, 0, b""), Packet(50_000, 0, b"xy")], 12)
        self.assertEqual(stats.packets_in, {UNKNOWN_PACKET: 9_999, 1: 1})
        self.assertEqual(stats.bytes_in, {UNKNOWN_PACKET: 5 * 9_998 + 7, 1: 5})
