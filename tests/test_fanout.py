"""
Tests for L{chatsvc.net._fanout}, the C helper that sends the fan-out's
bytes: every socket gets all of them or says how much it took, and bad
arguments are refused before anything is sent.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.support import c_helper

try:
    from chatsvc.net import _fanout
except ImportError:
    _fanout = None  # type: ignore[assignment]


class SendEachTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.send_each: Any = c_helper(_fanout, "chatsvc.net._fanout").send_each
        self.pairs = [self.pair() for _ in range(3)]
        self.fds = [ours.fileno() for ours, _ in self.pairs]

    def pair(self) -> tuple[socket.socket, socket.socket]:
        ours, peer = socket.socketpair()
        ours.setblocking(False)
        peer.setblocking(False)
        self.addCleanup(ours.close)
        self.addCleanup(peer.close)
        return ours, peer

    def received(self) -> list[bytes]:
        out = []
        for _, peer in self.pairs:
            try:
                out.append(peer.recv(1 << 20))
            except BlockingIOError:
                out.append(b"")
        return out

    def test_every_socket(self) -> None:
        self.assertIsNone(self.send_each(self.fds, b"notify"))
        self.assertEqual(self.received(), [b"notify"] * 3)

    def test_from_start(self) -> None:
        self.assertIsNone(self.send_each(self.fds, bytearray(b"notify"), 1))
        self.assertIsNone(self.send_each(self.fds, memoryview(b"!"), 3))
        self.assertEqual(self.received(), [b"", b"notify", b"notify"])

    def test_stops_at_a_partial_send(self) -> None:
        """
        A socket that takes part of the bytes ends the call: its index and
        what it took are returned, and the sockets after it are not sent to.
        """
        ours, _ = self.pairs[1]
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        data = bytes(range(256)) * 256
        index, taken = self.send_each(self.fds, data)
        self.assertEqual(index, 1)
        self.assertTrue(0 < taken < len(data))
        first, second, third = self.received()
        self.assertEqual((first, second, third), (data, data[:taken], b""))

    def test_stops_at_a_failed_send(self) -> None:
        """
        A send that fails (here: the socket is full) takes 0 bytes.
        """
        ours, _ = self.pairs[0]
        with self.assertRaises(BlockingIOError):
            while True:
                ours.send(b"x" * 65536)
        self.assertEqual(self.send_each(self.fds, b"notify"), (0, 0))

    def test_not_sockets(self) -> None:
        """
        A descriptor that is not an open socket fails like a broken
        connection.
        """
        with open(os.devnull, "wb") as devnull:
            self.assertEqual(self.send_each([devnull.fileno()], b"x"), (0, 0))
        self.assertEqual(self.send_each([self.fds[0], -1], b"x"), (1, 0))

    def test_closed_peer(self) -> None:
        """
        A connection its peer closed fails without a signal that would stop
        the process.
        """
        _, peer = self.pairs[2]
        peer.close()
        self.assertEqual(self.send_each(self.fds, b"x"), (2, 0))

    def test_bad_arguments(self) -> None:
        """
        Bad arguments raise before anything is sent.
        """
        for args, error in [
            ((tuple(self.fds), b"x"), TypeError),
            ((self.fds, "text"), TypeError),
            (([*self.fds, "3"], b"x"), TypeError),
            (([*self.fds, 2**40], b"x"), ValueError),
            (([*self.fds, -2], b"x"), ValueError),
            (([*self.fds, 2**70], b"x"), OverflowError),
            ((self.fds, b"x", 4), ValueError),
            ((self.fds, b"x", -1), ValueError),
            ((self.fds,), TypeError),
            ((self.fds, b"x", 0, 0), TypeError),
        ]:
            with self.assertRaises(error):
                self.send_each(*args)
        self.assertEqual(self.received(), [b""] * 3)
