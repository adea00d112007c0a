"""
Tests for L{chatsvc.net.sendqueue.transport_writers}: when a write goes
straight to the socket and when it goes through C{transport.write}, one test
per thing it checks, on a real TCP connection object over a socket pair.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.net.sendqueue import MAX_IOVEC, transport_writers


class FlakySocket:
    """
    A socket whose C{send} takes only C{take} bytes, or fails.
    """

    def __init__(self, take: int | None) -> None:
        self.take = take
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        if self.take is None:
            raise BlockingIOError()
        self.sent.append(data[: self.take])
        return self.take

    def sendmsg(self, chunks: list[bytes]) -> int:
        return self.send(b"".join(chunks))


class TransportWriterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ours, self.peer = socket.socketpair()
        self.peer.setblocking(False)
        self.addCleanup(self.ours.close)
        self.addCleanup(self.peer.close)
        self.connection: Any = tcp.Connection(self.ours, Protocol(), MemoryReactor())
        self.connection.connected = True
        self.written: list[bytes] = []
        self.connection.write = self.written.append

    def received(self) -> bytes:
        try:
            return self.peer.recv(65536)
        except BlockingIOError:
            return b""

    def assertWentThroughTransport(self) -> None:
        writers = transport_writers(self.connection)
        writers.write(b"data")
        writers.write_sequence([b"da", b"ta"], 4)
        self.assertEqual(self.written, [b"data", b"data"])
        self.assertEqual(self.received(), b"")

    def test_idle_connection_sends_on_the_socket(self) -> None:
        transport_writers(self.connection).write(b"data")
        self.assertEqual(self.received(), b"data")
        self.assertEqual(self.written, [])

    def test_sequence_in_one_sendmsg(self) -> None:
        """
        A list of byte strings leaves in one C{sendmsg}, not joined first.
        """
        sent: list[list[bytes]] = []
        real = self.connection.socket

        class Recording:
            send = real.send

            def sendmsg(self, chunks: list[bytes]) -> int:
                sent.append(list(chunks))
                return real.sendmsg(chunks)

        self.connection.socket = Recording()
        transport_writers(self.connection).write_sequence([b"ab", b"cd", b"e"], 5)
        self.assertEqual(sent, [[b"ab", b"cd", b"e"]])
        self.assertEqual(self.received(), b"abcde")
        self.assertEqual(self.written, [])

    def test_long_sequence_joined(self) -> None:
        """
        More byte strings than one C{sendmsg} may take are joined and written.
        """
        chunks = [b"x"] * (MAX_IOVEC + 1)
        transport_writers(self.connection).write_sequence(chunks, len(chunks))
        self.assertEqual(self.written, [b"x" * len(chunks)])

    def test_unsent_data_buffer(self) -> None:
        """
        Bytes the transport holds go first: the write joins them.
        """
        self.connection.dataBuffer = b"earlier"
        self.assertWentThroughTransport()

    def test_unjoined_writes(self) -> None:
        self.connection._tempDataLen = 7
        self.assertWentThroughTransport()

    def test_not_connected(self) -> None:
        self.connection.connected = False
        self.assertWentThroughTransport()

    def test_disconnecting(self) -> None:
        self.connection.disconnecting = True
        self.assertWentThroughTransport()

    def test_tls(self) -> None:
        """
        After C{startTLS} the socket carries TLS records: bytes written must
        be encrypted by the transport.
        """
        self.connection.TLS = True
        self.assertWentThroughTransport()

    def test_partial_send(self) -> None:
        """
        What the socket does not take goes to the transport, in order.
        """
        self.connection.socket = FlakySocket(take=3)
        writers = transport_writers(self.connection)
        writers.write(b"abcdefg")
        writers.write_sequence([b"ab", b"cd", b"efg"], 7)
        self.assertEqual(self.connection.socket.sent, [b"abc", b"abc"])
        self.assertEqual(self.written, [b"defg", b"defg"])

    def test_failed_send(self) -> None:
        self.connection.socket = FlakySocket(take=None)
        writers = transport_writers(self.connection)
        writers.write(b"abcdefg")
        writers.write_sequence([b"abc", b"defg"], 7)
        self.assertEqual(self.written, [b"abcdefg", b"abcdefg"])

    def test_other_transports_write(self) -> None:
        """
        Transports that are not a readiness reactor's TCP connection (IOCP's,
        TLS's, test transports) always get C{write}.
        """
        transport = StringTransport()
        writers = transport_writers(transport)
        self.assertEqual(writers.write, transport.write)
        writers.write_sequence([b"ab", b"c"], 3)
        self.assertEqual(transport.value(), b"abc")
