"""
Tests for L{chatsvc.net.session} and L{chatsvc.net.turn}: decoding into fair
batches, one write per turn, protocol errors, slow consumers.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.net.config import NetConfig
from chatsvc.net.session import Session, SessionFactory, send_to_all
from chatsvc.net.stats import UNKNOWN_PACKET
from chatsvc.protocol import Packet, encode_packet
from tests.support import HalfCloseTransport


class RecordingApp:
    """
    Records what the network layer tells it; echoes packets when asked to.
    """

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.log: list[tuple[str, int, Packet | None]] = []
        self.at_end_of_turn: Callable[[], object] = lambda: None

    def connected(self, session: Session) -> None:
        self.log.append(("connected", session.session_id, None))

    def packets_received(self, session: Session, packets: list[Packet]) -> None:
        for packet in packets:
            self.log.append(("packet", session.session_id, packet))
            if self.echo:
                session.send(encode_packet(packet.packet_id, packet.body))

    def end_of_turn(self) -> None:
        self.at_end_of_turn()

    def disconnected(self, session: Session, reason: Failure) -> None:
        self.log.append(("disconnected", session.session_id, None))

    def packets(self, session_id: int | None = None) -> list[Packet]:
        return [
            p
            for kind, sid, p in self.log
            if p is not None and (session_id is None or sid == session_id)
        ]


class LoggedTransport(HalfCloseTransport):
    """
    Logs every C{write} as C{(peer port, data)} in a list shared by the test.
    """

    def __init__(self, log: list[tuple[int, bytes]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._log = log

    def write(self, data: bytes) -> None:
        self._log.append((self.getPeer().port, data))
        super().write(data)


class SessionTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.app = RecordingApp(echo=True)
        self.config = NetConfig(
            batch_size=4,
            send_queue_limit=4096,
            input_buffer_limit=2048,
            max_connections_per_ip=0,
        )
        self.factory = SessionFactory(self.app, self.config, self.reactor)
        self.writes: list[tuple[int, bytes]] = []

    def connect(self, port: int = 1000) -> tuple[Session, HalfCloseTransport]:
        addr = IPv4Address("TCP", "127.0.0.1", port)
        session = self.factory.buildProtocol(addr)
        assert session is not None
        transport = LoggedTransport(self.writes, peerAddress=addr)
        session.makeConnection(transport)
        return session, transport

    def turn(self) -> None:
        """
        Run exactly one reactor turn's worth of the pump.
        """
        self.factory.pump.run_now()


class SessionTests(SessionTestCase):
    def test_session_ids_unique(self) -> None:
        ids = {self.connect(port)[0].session_id for port in range(1000, 1050)}
        self.assertEqual(len(ids), 50)

    def test_connected_and_disconnected(self) -> None:
        session, _transport = self.connect()
        session.connectionLost(Failure(ConnectionError()))
        self.assertEqual(
            self.app.log,
            [
                ("connected", session.session_id, None),
                ("disconnected", session.session_id, None),
            ],
        )
        self.assertEqual(self.factory.connections, {})

    def test_packets_wait_for_the_turn(self) -> None:
        """
        C{dataReceived} only buffers: the I/O path never runs application logic.
        """
        session, _transport = self.connect()
        session.dataReceived(encode_packet(1, b"a"))
        self.assertEqual(self.app.packets(), [])
        self.turn()
        self.assertEqual(self.app.packets(), [Packet(1, 0, b"a")])

    def scheduled_turns(self) -> int:
        """
        The timed calls waiting, beyond those of the connections' timers.
        """
        return len(self.reactor.getDelayedCalls()) - self.timers

    def test_an_answered_turn_needs_no_other(self) -> None:
        """
        A turn that answers what it read writes the answer and leaves no
        other turn scheduled: one pass of the reactor per request.
        """
        session, _transport = self.connect()
        self.timers = len(self.reactor.getDelayedCalls())
        session.dataReceived(encode_packet(1, b"a"))
        self.assertEqual(self.scheduled_turns(), 1)
        self.turn()
        self.assertEqual(self.writes, [(1000, encode_packet(1, b"a"))])
        self.assertEqual(self.scheduled_turns(), 0)

    def test_work_left_gets_another_turn(self) -> None:
        """
        A session with more than a batch of packets gets the next turn.
        """
        session, _transport = self.connect()
        self.timers = len(self.reactor.getDelayedCalls())
        session.dataReceived(b"".join(encode_packet(1, b"%d" % i) for i in range(6)))
        self.turn()
        self.assertEqual((len(self.app.packets()), self.scheduled_turns()), (4, 1))
        self.turn()
        self.assertEqual((len(self.app.packets()), self.scheduled_turns()), (6, 0))

    def test_turns_after_the_poll(self) -> None:
        """
        With a reactor that has C{callAfterPoll}, a turn is one call after
        the poll, not a timed call.
        """
        after_poll: list[Callable[[], object]] = []
        reactor: Any = MemoryReactorClock()
        reactor.callAfterPoll = after_poll.append
        factory = SessionFactory(self.app, self.config, reactor)
        address = IPv4Address("TCP", "127.0.0.1", 1)
        session = factory.buildProtocol(address)
        assert session is not None
        session.makeConnection(LoggedTransport(self.writes, peerAddress=address))
        session.dataReceived(encode_packet(1, b"a") + encode_packet(1, b"b"))
        self.assertEqual(len(after_poll), 1)
        self.assertEqual(reactor.getDelayedCalls(), [])
        after_poll.pop()()
        self.assertEqual(
            self.writes, [(1, encode_packet(1, b"a") + encode_packet(1, b"b"))]
        )
        self.assertEqual(after_poll, [])

    def test_one_write_per_turn(self) -> None:
        """
        Everything answered during a turn leaves in one write.
        """
        session, _transport = self.connect()
        session.dataReceived(encode_packet(1, b"a") + encode_packet(1, b"b"))
        session.dataReceived(encode_packet(1, b"c"))
        self.turn()
        self.assertEqual(
            self.writes,
            [
                (
                    1000,
                    encode_packet(1, b"a")
                    + encode_packet(1, b"b")
                    + encode_packet(1, b"c"),
                )
            ],
        )

    def test_end_of_turn_output(self) -> None:
        """
        What the application sends while the turn ends (a room's notifies)
        goes out at once, after what was queued before it, one write per
        connection, in the order the application sends it.
        """
        busy, _ = self.connect(1)
        quiet, _ = self.connect(2)
        self.app.at_end_of_turn = lambda: [s.send(b"notify") for s in (busy, quiet)]
        busy.dataReceived(encode_packet(1, b"ping"))
        self.turn()
        self.assertEqual(
            self.writes, [(1, encode_packet(1, b"ping") + b"notify"), (2, b"notify")]
        )

    def test_send_to_all(self) -> None:
        """
        L{send_to_all} is C{send} on every session: at the end of a turn a
        session's queued output and the data leave in one write, an idle one
        writes the data at once, a paused one keeps it until it resumes and a
        closed one drops it.
        """
        busy, idle, paused, closed = (self.connect(port)[0] for port in range(1, 5))
        paused._queue.pauseProducing()
        closed._queue.close()
        sessions = [busy, idle, paused, closed]
        self.app.at_end_of_turn = lambda: send_to_all(sessions, b"notify")
        busy.dataReceived(encode_packet(1, b"ping"))
        self.turn()
        self.assertEqual(
            self.writes, [(1, encode_packet(1, b"ping") + b"notify"), (2, b"notify")]
        )
        paused._queue.resumeProducing()
        self.assertEqual(self.writes[2:], [(3, b"notify")])

    def test_batches_are_fair(self) -> None:
        """
        A client that sends many packets at once delays others by at most one
        batch per turn: sessions take turns, batch by batch.
        """
        flood, _ = self.connect(1)
        quiet, _ = self.connect(2)
        flood.dataReceived(b"".join(encode_packet(1, b"%d" % i) for i in range(10)))
        quiet.dataReceived(encode_packet(2, b"q"))
        self.turn()
        order = [sid for kind, sid, p in self.app.log if kind == "packet"]
        self.assertEqual(order, [flood.session_id] * 4 + [quiet.session_id])
        self.turn()
        self.turn()
        self.assertEqual(
            [p.body for p in self.app.packets(flood.session_id)],
            [b"%d" % i for i in range(10)],
        )

    def test_reading_pauses_above_input_limit(self) -> None:
        session, transport = self.connect()
        many = b"".join(encode_packet(1, b"x" * 95) for _ in range(30))
        session.dataReceived(many)
        self.assertEqual(transport.producerState, "paused")
        for _ in range(10):
            self.turn()
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(len(self.app.packets()), 30)

    def test_reads_after_pause_are_kept(self) -> None:
        """
        The IOCP reactor may deliver reads after C{pauseProducing}: they are
        buffered and processed like any other.
        """
        session, _transport = self.connect()
        many = b"".join(encode_packet(1, b"x" * 95) for _ in range(30))
        session.dataReceived(many)
        session.dataReceived(many)
        for _ in range(20):
            self.turn()
        self.assertEqual(len(self.app.packets()), 60)

    def test_protocol_error_closes_only_that_session(self) -> None:
        bad, bad_transport = self.connect(1)
        good, good_transport = self.connect(2)
        with capturedLogs() as events:
            bad.dataReceived(struct.pack("<HHB", 0, 1, 0))
            good.dataReceived(encode_packet(1, b"fine"))
            self.turn()
        self.assertTrue(bad_transport.disconnecting)
        self.assertFalse(good_transport.disconnecting)
        self.assertEqual(good_transport.value(), encode_packet(1, b"fine"))
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["peer"], "127.0.0.1:1")
        self.assertIn("packet length 0", warnings[0]["reason"])

    def test_packets_before_the_error_are_handled(self) -> None:
        session, transport = self.connect()
        session.dataReceived(encode_packet(1, b"a") + struct.pack("<HHB", 4, 1, 0))
        self.turn()
        self.assertEqual(self.app.packets(), [Packet(1, 0, b"a")])
        self.assertTrue(transport.disconnecting)

    def test_aborted_session_sends_nothing_more(self) -> None:
        """
        An aborted connection's queue drops what it holds and what it is
        given later: nothing reaches a connection being dropped.
        """
        session, transport = self.connect()
        session.send(b"held")
        session.abort()
        session.send(b"later")
        self.turn()
        self.assertTrue(transport.aborted)
        self.assertEqual(transport.value(), b"")

    def test_header_cut_off_by_disconnect(self) -> None:
        session, _transport = self.connect()
        session.dataReceived(b"\x07\x00\x01")
        with capturedLogs() as events:
            session.connectionLost(Failure(ConnectionError()))
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertIn("closed inside a packet", warnings[0]["reason"])

    def test_packets_received_before_close_are_handled(self) -> None:
        """
        Complete packets that arrived before the peer closed are not lost.
        """
        session, _transport = self.connect()
        self.timers = len(self.reactor.getDelayedCalls())
        session.dataReceived(b"".join(encode_packet(1, b"%d" % i) for i in range(9)))
        session.connectionLost(Failure(ConnectionError()))
        self.assertEqual(len(self.app.packets()), 9)
        self.assertEqual(self.app.log[-1][0], "disconnected")
        self.turn()
        self.assertEqual(len(self.app.packets()), 9)

    def test_output_pause_holds_output_and_input(self) -> None:
        """
        While the transport is full the queue keeps output and the session
        stops taking input; both resume when it drains.
        """
        session, transport = self.connect()
        session._queue.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        session.dataReceived(encode_packet(1, b"a"))
        self.turn()
        self.assertEqual(self.app.packets(), [])
        session._queue.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        self.turn()
        self.assertEqual(transport.value(), encode_packet(1, b"a"))

    def test_slow_consumer_is_cut_off(self) -> None:
        slow, slow_transport = self.connect(1)
        other, other_transport = self.connect(2)
        slow._queue.pauseProducing()
        with capturedLogs() as events:
            for _ in range(5):
                slow.send(b"x" * 1000)
                other.send(b"y" * 1000)
                self.turn()
        self.assertTrue(slow_transport.disconnecting)
        self.assertEqual(slow_transport.value(), b"")
        self.assertFalse(other_transport.disconnecting)
        self.assertEqual(other_transport.value(), b"y" * 5000)
        self.assertEqual(len(events), 1)
        self.assertIn("Slow consumer", events[0]["log_format"])

    def test_counters(self) -> None:
        """
        Packets are counted by id for the ids the factory knows, and all
        others together.
        """
        self.factory = SessionFactory(
            self.app, self.config, self.reactor, known_ids=[1]
        )
        bad, _ = self.connect(1)
        good, _ = self.connect(2)
        good.dataReceived(encode_packet(1, b"abc") * 2 + encode_packet(7, b""))
        bad.dataReceived(struct.pack("<HHB", 2, 1, 0))
        with capturedLogs():
            self.turn()
        stats = self.factory.stats
        self.assertEqual(stats.packets_in, {1: 2, UNKNOWN_PACKET: 1})
        self.assertEqual(stats.bytes_in, {1: 16, UNKNOWN_PACKET: 5})
        self.assertEqual(stats.bytes_out, 21)
        self.assertEqual(stats.protocol_errors, {"length": 1})

    def test_protocol_error_flood_is_rate_limited(self) -> None:
        with capturedLogs() as events:
            for port in range(100):
                session, _ = self.connect(port)
                session.dataReceived(struct.pack("<HHB", 0, 1, 0))
            self.turn()
        self.assertLess(len(events), 20)
        self.assertEqual(self.factory.stats.protocol_errors["length"], 100)

    def test_close_writes_even_when_paused(self) -> None:
        """
        A connection closed by the server writes out what it had queued.
        """
        session, transport = self.connect()
        session._queue.pauseProducing()
        session.send(b"held")
        session.close("test")
        self.assertEqual(transport.value(), b"held")
        self.assertTrue(transport.write_closed)

    def test_closed_while_scheduled_processes_nothing_more(self) -> None:
        """
        Packets that arrived before a server-side close but were not yet
        processed are not handed over: their answers could not be sent (the
        stream is closing), so the application must not act on them.
        """
        session, transport = self.connect()
        session.dataReceived(encode_packet(1, b"late"))
        session.close("test")
        self.turn()
        self.assertEqual(self.app.packets(), [])
        self.assertTrue(transport.write_closed)

    def test_close_reads_again_to_see_the_peer_close(self) -> None:
        """
        A session whose reading was paused (its client was not reading) reads
        again once closed, discarding the input, so that the client's end of
        the stream is seen instead of waiting for the linger to abort it.
        """
        session, transport = self.connect()
        session._queue.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        session.close("test")
        self.assertEqual(transport.producerState, "producing")
        session.dataReceived(encode_packet(1, b"discarded"))
        self.turn()
        self.assertEqual(self.app.packets(), [])

    def test_close_flushes_then_half_closes(self) -> None:
        """
        A closed session sends what it queued, ends its side of the stream,
        ignores further input, and aborts if the peer lingers.
        """
        session, transport = self.connect()
        session.send(b"bye")
        session.close("test", linger=5)
        self.assertEqual(transport.value(), b"bye")
        self.assertTrue(transport.write_closed)
        session.dataReceived(encode_packet(1, b"ignored"))
        self.turn()
        self.assertEqual(self.app.packets(), [])
        self.reactor.advance(5)
        self.assertTrue(transport.aborted)

    def test_peer_closing_cancels_the_linger(self) -> None:
        session, _ = self.connect()
        session.close("test", linger=5)
        session.connectionLost(Failure(ConnectionError()))
        self.reactor.advance(0)  # the turn that a disconnect ends
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class IdleTimeoutTests(SessionTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.factory = SessionFactory(
            self.app, NetConfig(idle_timeout=10), self.reactor
        )
        self.session, self.transport = self.connect()

    def test_complete_packets_keep_the_connection(self) -> None:
        for _ in range(5):
            self.reactor.advance(9)
            self.session.dataReceived(encode_packet(1, b"keepalive"))
            self.turn()
        self.assertFalse(self.transport.aborted)

    def test_bytes_that_complete_no_packet_do_not(self) -> None:
        """
        A byte every few seconds never completes a packet, so it does not
        hold the connection open.
        """
        packet = encode_packet(1, b"never complete")
        with capturedLogs() as events:
            for i in range(4):
                self.reactor.advance(3)
                self.session.dataReceived(packet[i : i + 1])
                self.turn()
        self.assertTrue(self.transport.aborted)
        self.assertEqual(self.factory.stats.idle_timeouts, 1)
        self.assertIn("idle", events[0]["log_format"])
