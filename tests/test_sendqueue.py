"""
Tests for L{chatsvc.net.sendqueue}: when a write goes straight to the socket
and when it goes through C{transport.write} (L{transport_writers}, one test
per thing it checks), and the fan-out of L{push_to_all}, on real TCP
connection objects over socket pairs.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.net import sendqueue
from chatsvc.net.sendqueue import MAX_IOVEC, SendQueue, push_to_all, transport_writers
from chatsvc.net.stats import NetStats
from chatsvc.net.turn import Pump


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


class FillingSocket:
    """
    A socket with C{room} bytes of buffer left: it takes what fits, then
    would block.
    """

    def __init__(self, room: int) -> None:
        self.room = room
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        if not self.room:
            raise BlockingIOError()
        taken = data[: self.room]
        self.room -= len(taken)
        self.sent.append(taken)
        return len(taken)

    def sendmsg(self, chunks: list[bytes]) -> int:
        return self.send(b"".join(chunks))


class BrokenSocket(FlakySocket):
    """
    A socket object that is not a socket: every C{send} fails.
    """

    def __init__(self) -> None:
        super().__init__(take=None)

    def setblocking(self, flag: bool) -> None:
        pass

    def fileno(self) -> int:
        return -1


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
        self.assertFalse(writers.write(b"x"))
        self.assertFalse(writers.write_sequence([b"ab", b"c"], 3))
        self.assertEqual(transport.value(), b"xabc")
        self.assertIsNone(writers.send)


class Owner:
    """
    A send queue's owner that records what it is told.
    """

    def __init__(self) -> None:
        self.told: list[str] = []

    def output_paused(self) -> None:
        self.told.append("paused")

    def output_resumed(self) -> None:
        self.told.append("resumed")

    def output_overflowed(self, pending: int) -> None:
        self.told.append("overflowed")


class LimitTests(SynchronousTestCase):
    """
    The send-queue limit bounds what a queue holds for a receiver that is not
    taking it, not what one turn gives it.
    """

    def setUp(self) -> None:
        self.pump = Pump(MemoryReactorClock())
        self.transport = StringTransport()
        self.owner = Owner()
        self.queue = SendQueue(self.transport, self.pump, 100, self.owner, NetStats())

    def test_one_turn_above_the_limit(self) -> None:
        for _ in range(5):
            self.queue.push(b"x" * 60)
        self.pump.run_now()
        self.assertEqual(self.transport.value(), b"x" * 300)
        self.assertEqual(self.owner.told, [])

    def test_held_while_paused(self) -> None:
        self.queue.pauseProducing()
        self.queue.push(b"x" * 60)
        self.assertEqual(self.owner.told, ["paused"])
        self.queue.push(b"x" * 60)
        self.assertEqual(self.owner.told, ["paused", "overflowed"])


class Member:
    """
    One receiver of a fan-out: a send queue on a real TCP connection object
    over a socket pair, whose C{transport.write} is recorded and counted as
    held by the transport (as Twisted's C{_tempDataLen} would count it).
    """

    def __init__(
        self, test: SynchronousTestCase, pump: Pump, stats: NetStats, sock: Any = None
    ) -> None:
        ours, self.peer = socket.socketpair()
        self.peer.setblocking(False)
        test.addCleanup(ours.close)
        test.addCleanup(self.peer.close)
        self.connection: Any = tcp.Connection(ours, Protocol(), MemoryReactor())
        if sock is not None:
            self.connection.socket = sock
        self.connection.connected = True
        self.written: list[bytes] = []
        self.connection.write = self.buffer
        self.connection.registerProducer = lambda producer, streaming: None
        self.queue = SendQueue(self.connection, pump, 1 << 20, Owner(), stats)

    def buffer(self, data: bytes) -> None:
        self.written.append(data)
        self.connection._tempDataLen += len(data)

    def received(self) -> bytes:
        try:
            return self.peer.recv(65536)
        except BlockingIOError:
            return b""


class FanOutTests(SynchronousTestCase):
    """
    L{push_to_all}: the same bytes to many queues, straight to the sockets
    of the clean ones, through their writers for the others, and in order
    for every receiver; with the C helper's sends where it is built.
    """

    send_each = sendqueue._send_each

    def setUp(self) -> None:
        self.patch(sendqueue, "_send_each", self.send_each)
        self.pump = Pump(MemoryReactorClock())
        self.stats = NetStats()
        self.members = [Member(self, self.pump, self.stats) for _ in range(3)]
        self.queues = [member.queue for member in self.members]
        self.at_end: tuple[bytes, ...] = ()
        self.pump.add_turn_hook(self.hand_over)

    def hand_over(self) -> None:
        for data in self.at_end:
            push_to_all(self.queues, data)

    def end_turn(self, *data: bytes) -> None:
        """
        Run one turn whose end hands each of C{data} to every member.
        """
        self.at_end = data
        self.pump.run_soon()
        self.pump.run_now()

    def test_straight_to_every_socket(self) -> None:
        self.end_turn(b"notify")
        for member in self.members:
            self.assertEqual(member.received(), b"notify")
            self.assertEqual(member.written, [])
        self.assertEqual(self.stats.bytes_out, 3 * len(b"notify"))

    def test_held_output_first(self) -> None:
        """
        A queue holding responses of the turn sends them with the notifies,
        in one system call; the others get the notifies alone. All of them
        are clean again for the next turn.
        """
        self.queues[1].push(b"response;")
        self.queues[2].push(b"one;")
        self.queues[2].push(b"two;")
        self.end_turn(b"notify")
        self.assertEqual(
            [member.received() for member in self.members],
            [b"notify", b"response;notify", b"one;two;notify"],
        )
        self.assertEqual(self.stats.bytes_out, 3 * len(b"notify") + 17)
        self.assertEqual([queue.pending for queue in self.queues], [0, 0, 0])
        self.end_turn(b"again")
        for member in self.members:
            self.assertEqual(member.received(), b"again")
            self.assertEqual(member.written, [])

    def test_held_output_and_a_full_socket(self) -> None:
        """
        A queue holding responses whose socket takes only part of them and
        the notifies writes the rest through its transport, in order; the
        members after it get theirs straight away.
        """
        member = self.members[1]
        member.connection.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self.queues[1].push(b"response;")
        self.queues[1].push(b"another;")
        data = bytes(range(256)) * 192
        self.end_turn(data)
        taken = member.received()
        self.assertTrue(0 < len(taken) < len(data))
        self.assertEqual(taken + b"".join(member.written), b"response;another;" + data)
        self.assertEqual(self.members[2].received(), data)
        self.assertEqual(self.stats.bytes_out, 3 * len(data) + 17)
        self.end_turn(b"later")
        self.assertEqual(member.written[-1], b"later")

    def replace(self, index: int, sock: Any) -> Member:
        """
        Make member C{index} one whose connection's socket is C{sock}.
        """
        member = Member(self, self.pump, self.stats, sock)
        self.members[index] = member
        self.queues[index] = member.queue
        return member

    def test_failed_send_among_them(self) -> None:
        """
        A socket whose C{send} fails gets the bytes through its transport; the
        sockets after it still get theirs straight away, and the failed one
        goes through its transport as long as the transport holds anything.
        """
        failing = self.replace(1, FlakySocket(take=None))
        self.end_turn(b"first")
        self.end_turn(b"second")
        self.assertEqual(self.members[0].received(), b"firstsecond")
        self.assertEqual(self.members[2].received(), b"firstsecond")
        self.assertEqual(failing.written, [b"first", b"second"])

    def test_many_failed_sends(self) -> None:
        """
        A room of thousands whose sends all fail (every reader stopped) gets
        every member's bytes to its transport, one after the other.
        """
        connections = []
        for _ in range(3000):
            connection: Any = tcp.Connection(
                BrokenSocket(), Protocol(), MemoryReactor()
            )
            connection.connected = True
            connection.written = []
            connection.write = connection.written.append
            connection.registerProducer = lambda producer, streaming: None
            connections.append(connection)
        self.queues = [
            SendQueue(connection, self.pump, 1 << 20, Owner(), self.stats)
            for connection in connections
        ]
        self.end_turn(b"notify")
        self.assertEqual(
            [connection.written for connection in connections],
            [[b"notify"]] * len(connections),
        )

    def test_partial_send_then_in_order(self) -> None:
        """
        What a socket does not take goes through the transport, and so does
        everything after it until the transport has sent it; then the queue
        sends straight to its socket again.
        """
        sock = FillingSocket(room=3)
        member = self.replace(1, sock)
        self.end_turn(b"abcdef")
        self.end_turn(b"ghi")
        self.assertEqual(sock.sent, [b"abc"])
        self.assertEqual(member.written, [b"def", b"ghi"])
        member.connection._tempDataLen = 0  # the reactor sent it
        sock.room = 100
        self.end_turn(b"j")
        self.end_turn(b"k")
        self.assertEqual(sock.sent, [b"abc", b"j", b"k"])
        self.assertEqual(member.written, [b"def", b"ghi"])

    def test_socket_full(self) -> None:
        """
        A real socket that takes part of the bytes: the rest goes through the
        transport, and the members after it get theirs straight away.
        """
        member = self.members[1]
        member.connection.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        data = bytes(range(256)) * 192
        self.end_turn(data)
        taken = member.received()
        self.assertTrue(0 < len(taken) < len(data))
        self.assertEqual(taken + b"".join(member.written), data)
        self.assertEqual(self.members[2].received(), data)

    def test_paused_and_closed_queues(self) -> None:
        """
        A paused queue holds the bytes until it is resumed; a closed one
        drops them.
        """
        self.queues[0].pauseProducing()
        self.queues[2].close()
        self.end_turn(b"notify")
        self.assertEqual(
            [member.received() for member in self.members], [b"", b"notify", b""]
        )
        self.queues[0].resumeProducing()
        self.assertEqual(self.members[0].received(), b"notify")

    def test_second_push_of_a_turn_waits(self) -> None:
        """
        A queue that wrote while the turn ends holds what else it is given in
        that turn for one write after the hooks.
        """
        self.end_turn(b"one;", b"two;")
        for member in self.members:
            self.assertEqual(member.received(), b"one;two;")


class PythonFanOutTests(FanOutTests):
    """
    L{FanOutTests} with the sockets' own C{send}, as where the C helper is
    not built.
    """

    send_each = None
