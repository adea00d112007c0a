"""
Tests for L{chatsvc.net._fanout}, the C helper that sends the fan-out's
bytes: every socket gets all of them (after its own head, if it has one) or
says how much it took, bytes large enough to be spliced from a pipe arrive as
they were sent, and bad arguments are refused before anything is sent.
"""

from __future__ import annotations

import os
import random
import socket
import sys
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

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

    def test_heads_first(self) -> None:
        """
        A socket's head goes before the data; an empty one sends the data
        alone.
        """
        heads = [b"one;", b"", b"three;"]
        self.assertIsNone(self.send_each(self.fds, b"notify", 0, heads))
        self.assertIsNone(self.send_each(self.fds, b"!", 2, heads))
        self.assertEqual(
            self.received(), [b"one;notify", b"notify", b"three;notifythree;!"]
        )

    def test_stops_at_a_partial_send_with_heads(self) -> None:
        """
        What a socket took counts its head and the data.
        """
        ours, _ = self.pairs[1]
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        data = bytes(range(256)) * 256
        heads = [b"one;", b"two;", b"three;"]
        index, taken = self.send_each(self.fds, data, 0, heads)
        self.assertEqual(index, 1)
        self.assertTrue(0 < taken < len(data))
        self.assertEqual(
            self.received(), [b"one;" + data, (b"two;" + data)[:taken], b""]
        )

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
            ((self.fds, b"x", 0, [b""] * 2), TypeError),
            ((self.fds, b"x", 0, (b"",) * 3), TypeError),
            ((self.fds, b"x", 0, [b"", b"", "text"]), TypeError),
            ((self.fds, b"x", 0, None, None), TypeError),
        ]:
            with self.assertRaises(error):
                self.send_each(*args)
        self.assertEqual(self.received(), [b""] * 3)


class SplicedSendTests(SynchronousTestCase):
    """
    On Linux, bytes of 32 KiB or more for four sockets or more are copied
    into a pipe once and spliced into each socket: every receiver gets
    exactly its head and the data, also after a socket that took part of
    them, and a forked process uses pipes of its own.
    """

    def setUp(self) -> None:
        self.send_each: Any = c_helper(_fanout, "chatsvc.net._fanout").send_each
        if sys.platform != "linux":
            raise SkipTest("bytes are spliced from a pipe on Linux only")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(self.listener.close)
        self.pairs = [self.connection() for _ in range(6)]
        self.fds = [ours.fileno() for ours, _ in self.pairs]
        self.random = random.Random(16)

    def connection(self, window: int = 1 << 20) -> tuple[socket.socket, socket.socket]:
        """
        A loopback TCP connection whose receiver has a buffer of C{window}
        bytes: our non-blocking end, the receiver's.
        """
        peer = socket.socket()
        self.addCleanup(peer.close)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, window)
        peer.connect(self.listener.getsockname())
        ours, _ = self.listener.accept()
        self.addCleanup(ours.close)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, window)
        ours.setblocking(False)
        peer.setblocking(False)
        return ours, peer

    def data(self, size: int) -> bytes:
        return self.random.randbytes(size)

    def send(self, data: bytes, heads: list[bytes] | None = None) -> list[bytes]:
        """
        Send as the send queues do, each socket from where the last call
        stopped; return what each socket took.
        """
        if heads is None:
            wanted = [data] * len(self.fds)
        else:
            wanted = [head + data for head in heads]
        taken = list(wanted)
        start = 0
        while (unsent := self.send_each(self.fds, data, start, heads)) is not None:
            index, count = unsent
            taken[index] = wanted[index][:count]
            start = index + 1
        return taken

    def received(self, expected: list[bytes]) -> list[bytes]:
        """
        Read each receiver until it has as many bytes as expected of it.
        """
        out = []
        for (_, peer), wanted in zip(self.pairs, expected, strict=True):
            peer.setblocking(True)
            peer.settimeout(5)
            got = b""
            while len(got) < len(wanted):
                got += peer.recv(1 << 20)
            peer.setblocking(False)
            out.append(got)
        return out

    def test_large_data(self) -> None:
        data = self.data(100_000)
        taken = self.send(data)
        self.assertEqual(self.received(taken), [data] * len(self.fds))
        self.assertEqual(taken, [data] * len(self.fds))

    def test_large_data_with_heads(self) -> None:
        data = self.data(70_000)
        heads = [b"", b"response;", b"", b"r;" * 100, b"x", b""]
        taken = self.send(data, heads)
        self.assertEqual(taken, [head + data for head in heads])
        self.assertEqual(self.received(taken), taken)

    def test_after_a_partial_send(self) -> None:
        """
        A socket that takes part of the bytes stops the call; the next calls
        send what they are given, not what the socket did not take.
        """
        self.pairs[2] = self.connection(window=4096)
        self.fds[2] = self.pairs[2][0].fileno()
        first = self.data(300_000)
        index, count = self.send_each(self.fds, first)
        self.assertEqual(index, 2)
        self.assertTrue(0 < count < len(first))
        self.assertIsNone(self.send_each(self.fds, first, 3))
        received = self.received([first, first, first[:count], first, first, first])
        self.assertEqual(received[2], first[:count])
        second = self.data(50_000)
        taken = self.send(second)
        self.assertEqual(taken[:2] + taken[3:], [second] * 5)
        self.assertEqual(self.received(taken), taken)

    def test_failed_sockets(self) -> None:
        """
        A closed descriptor and a connection its peer closed fail as they do
        without splicing.
        """
        data = self.data(40_000)
        _, peer = self.pairs[1]
        peer.close()
        self.assertEqual(self.send_each([-1, *self.fds], data), (0, 0))
        # Whether the first send to a closed peer fails depends on the TCP
        # state; once it has been reset, every send does.
        results = [self.send_each(self.fds, data, 1) for _ in range(3)]
        self.assertEqual(results[-1], (1, 0))

    def test_own_pipes_after_fork(self) -> None:
        """
        A forked process splices through pipes of its own, not its parent's.
        """
        data = self.data(40_000)
        self.assertEqual(self.send(data), [data] * len(self.fds))
        ours = pipes()
        self.assertEqual(len(ours), 2)
        self.received([data] * len(self.fds))
        child = os.fork()
        if child == 0:  # pragma: no cover (the child reports by its status)
            try:
                self.send(data)
                theirs = pipes()
                os._exit(0 if len(theirs) == 2 and not theirs & ours else 1)
            finally:
                os._exit(2)
        _, status = os.waitpid(child, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertEqual(self.received([data] * len(self.fds)), [data] * len(self.fds))
        self.assertEqual(pipes(), ours)


def pipes() -> set[str]:
    """
    The helper's pipes in this process (their C{/proc/self/fd} links): the
    pipes of 1 MiB.
    """
    import fcntl  # not on Windows

    links = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("pipe:") and (
                fcntl.fcntl(int(fd), fcntl.F_GETPIPE_SZ) == 1 << 20
            ):
                links.add(link)
        except OSError:
            continue
    return links
