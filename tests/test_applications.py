"""
Tests for L{chatsvc.host.applications}: the packet-echo application of the
send-queue stage, the unknown-packet policy, the chat application's turns,
login deadline and keepalive, and what the chat stage logs.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.defer import ensureDeferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.content.chat import ChatConfig
from chatsvc.content.login import OpenLogin
from chatsvc.host.applications import (
    LOGIN_LOG_BURST,
    ChatApplication,
    PacketEcho,
    UnknownPackets,
)
from chatsvc.host.redis_login import RedisLogin, RedisURL
from chatsvc.net.config import NetConfig
from chatsvc.net.session import Session, SessionFactory
from chatsvc.protocol import (
    ChatNotify,
    Packet,
    PacketDecoder,
    PacketId,
    Response,
    UserLeft,
    chat_request,
    encode_packet,
    enter_room_request,
    leave_room_request,
    login_request,
    parse_event,
)
from tests.support import HalfCloseTransport


class PacketEchoTests(SynchronousTestCase):
    def connect(
        self, app: PacketEcho
    ) -> tuple[SessionFactory, Session, HalfCloseTransport]:
        factory = SessionFactory(app, NetConfig(), MemoryReactorClock())
        addr = IPv4Address("TCP", "127.0.0.1", 1)
        session = factory.buildProtocol(addr)
        assert session is not None
        transport = HalfCloseTransport(peerAddress=addr)
        session.makeConnection(transport)
        return factory, session, transport

    def test_echo_batch_comes_back_unchanged(self) -> None:
        app = PacketEcho()
        factory, session, transport = self.connect(app)
        stream = b"".join(
            encode_packet(1, b"%d" % i, packet_type=i % 3) for i in range(40)
        )
        session.dataReceived(stream)
        for _ in range(3):
            factory.pump.run_now()
        self.assertEqual(transport.value(), stream)
        self.assertEqual(app.packets_out(), {1: 40})
        self.assertEqual(app.bytes_out(), {1: len(stream)})

    def test_unknown_ids_in_a_batch_are_counted_not_echoed(self) -> None:
        app = PacketEcho()
        factory, session, transport = self.connect(app)
        with capturedLogs():
            session.dataReceived(
                encode_packet(1, b"a")
                + encode_packet(500, b"?")
                + encode_packet(1, b"b")
            )
            factory.pump.run_now()
        self.assertEqual(
            transport.value(), encode_packet(1, b"a") + encode_packet(1, b"b")
        )
        self.assertEqual(app.unknown.count, 1)
        self.assertFalse(transport.aborted)

    def test_unknown_ids_can_disconnect(self) -> None:
        app = PacketEcho(UnknownPackets(disconnect=True))
        factory, session, transport = self.connect(app)
        with capturedLogs() as events:
            session.dataReceived(encode_packet(500, b"?"))
            factory.pump.run_now()
        self.assertTrue(transport.aborted)
        self.assertEqual(factory.stats.protocol_errors, {"unknown-id": 1})
        self.assertIn("unknown packet id 500", events[-1]["reason"])


class ChatApplicationTests(SynchronousTestCase):
    def test_disconnect_notifies_the_room_without_other_traffic(self) -> None:
        """
        A member's disconnect reaches the others in the room at once: it ends
        a turn of its own instead of waiting for somebody's next packet.
        """
        reactor = MemoryReactorClock()
        app = ChatApplication(ChatConfig(), OpenLogin(), reactor.seconds)
        factory = SessionFactory(app, NetConfig(), reactor)
        transports = []
        sessions = []
        for port, user in ((1, "alice"), (2, "bob")):
            addr = IPv4Address("TCP", "127.0.0.1", port)
            session = factory.buildProtocol(addr)
            assert session is not None
            transport = HalfCloseTransport(peerAddress=addr)
            session.makeConnection(transport)
            session.dataReceived(login_request(user, "pw") + enter_room_request(0))
            reactor.advance(0)
            reactor.advance(0)
            transports.append(transport)
            sessions.append(session)
        transports[0].clear()
        with capturedLogs():
            sessions[1].connectionLost(Failure(ConnectionDone()))
        reactor.advance(0)
        events = [parse_event(packet) for packet in decode(transports[0])]
        self.assertEqual(len(events), 1)
        self.assertIsInstance(events[0], UserLeft)

    def test_requests_of_one_batch_answered_in_order(self) -> None:
        """
        Chats, another request and a chat again in one batch: the run of
        chats before the leave is answered and published before the leave,
        the chat after it is answered as one outside a room (81), and a
        packet that breaks the protocol still lets the chats before it
        through to the room (the connection that broke it is dropped with
        whatever it had not sent).
        """
        reactor = MemoryReactorClock()
        app = ChatApplication(ChatConfig(chat_rate=0), OpenLogin(), reactor.seconds)
        factory = SessionFactory(app, NetConfig(), reactor)
        addr = IPv4Address("TCP", "127.0.0.1", 1)
        session = factory.buildProtocol(addr)
        assert session is not None
        transport = HalfCloseTransport(peerAddress=addr)
        session.makeConnection(transport)
        session.dataReceived(login_request("alice", "pw") + enter_room_request(0))
        reactor.advance(0)
        reactor.advance(0)
        transport.clear()
        other = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 2))
        assert other is not None
        other_transport = HalfCloseTransport(peerAddress=addr)
        other.makeConnection(other_transport)
        other.dataReceived(login_request("bob", "pw"))
        reactor.advance(0)
        session.dataReceived(
            chat_request("1")
            + chat_request("2")
            + leave_room_request()
            + chat_request("3")
        )
        factory.pump.run_now()
        self.assertEqual(
            [parse_event(packet) for packet in decode(transport)],
            [
                Response(PacketId.ROOM_CHAT_RESPONSE, 0),
                Response(PacketId.ROOM_CHAT_RESPONSE, 0),
                ChatNotify(b"alice", b"1"),
                ChatNotify(b"alice", b"2"),
                Response(PacketId.ROOM_LEAVE_RESPONSE, 0),
                Response(PacketId.ROOM_CHAT_RESPONSE, 81),
            ],
        )
        session.dataReceived(enter_room_request(0))
        factory.pump.run_now()
        transport.clear()
        other.dataReceived(enter_room_request(0))
        reactor.advance(0)
        transport.clear()
        other_transport.clear()
        with capturedLogs():
            session.dataReceived(chat_request("4") + encode_packet(221, b""))
            factory.pump.run_now()
        self.assertTrue(transport.aborted)
        self.assertEqual(decode(transport), [])
        self.assertEqual(
            [parse_event(packet) for packet in decode(other_transport)],
            [ChatNotify(b"alice", b"4")],
        )


class LoginDeadlineAndKeepaliveTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.connect()

    def connect(self, login_timeout: float = 10) -> None:
        self.app = ChatApplication(
            ChatConfig(login_timeout=login_timeout), OpenLogin(), self.reactor.seconds
        )
        self.factory = SessionFactory(self.app, NetConfig(), self.reactor)
        addr = IPv4Address("TCP", "127.0.0.1", 1)
        session = self.factory.buildProtocol(addr)
        assert session is not None
        self.session = session
        self.transport = HalfCloseTransport(peerAddress=addr)
        session.makeConnection(self.transport)

    def receive(self, data: bytes) -> bytes:
        self.transport.clear()
        with capturedLogs():
            self.session.dataReceived(data)
            self.factory.pump.run_now()
        return self.transport.value()

    def test_no_login_closed_at_the_deadline(self) -> None:
        self.reactor.advance(9.9)
        self.assertFalse(self.transport.aborted)
        with capturedLogs() as events:
            self.reactor.advance(0.1)
        self.assertTrue(self.transport.aborted)
        self.assertEqual(self.factory.stats.deadlines_missed, 1)
        self.assertEqual(events[0]["what"], "log in")

    def test_failed_logins_do_not_move_the_deadline(self) -> None:
        for _ in range(3):
            self.reactor.advance(3)
            self.assertEqual(
                self.receive(login_request(" ", "pw")),
                encode_packet(PacketId.LOGIN_RESPONSE, b"\x21\x00"),
            )
        with capturedLogs():
            self.reactor.advance(1)
        self.assertTrue(self.transport.aborted)

    def test_login_clears_the_deadline(self) -> None:
        self.reactor.advance(5)
        self.receive(login_request("alice", "pw"))
        self.reactor.advance(100)
        self.assertFalse(self.transport.aborted)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_zero_means_no_deadline(self) -> None:
        self.connect(login_timeout=0)
        self.reactor.advance(10_000)
        self.assertFalse(self.transport.aborted)

    def test_dev_echo_answered_before_and_after_login(self) -> None:
        """
        DEV_ECHO is the keepalive of a client that only listens; it is not a
        login.
        """
        ping = encode_packet(PacketId.DEV_ECHO, b"ping", packet_type=3)
        self.assertEqual(self.receive(ping), ping)
        self.receive(login_request("alice", "pw"))
        self.assertEqual(self.receive(ping * 2), ping * 2)
        self.assertEqual(self.app.server.stats.packets_out[PacketId.DEV_ECHO], 3)
        self.assertEqual(self.app.unknown.count, 0)


def decode(transport: HalfCloseTransport) -> list[Packet]:
    decoder = PacketDecoder()
    decoder.feed(transport.value())
    return decoder.read_batch(1000)


class ChatLogTests(SynchronousTestCase):
    """
    What the chat stage logs about logins and unknown packets, and how much
    of it a flood can produce.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.app = ChatApplication(
            ChatConfig(),
            OpenLogin(),
            self.clock.seconds,
            UnknownPackets(clock=self.clock.seconds),
        )
        self.factory = SessionFactory(self.app, NetConfig(), self.clock)

    def connect(self, port: int = 1) -> Session:
        # One address per connection: the per-address cap is not under test.
        addr = IPv4Address("TCP", f"10.0.{port // 250}.{port % 250 + 1}", port)
        session = self.factory.buildProtocol(addr)
        assert session is not None
        session.makeConnection(HalfCloseTransport(peerAddress=addr))
        return session

    def send(self, session: Session, data: bytes) -> None:
        session.dataReceived(data)
        self.factory.pump.run_now()

    def messages(self, events: list[dict[str, object]], needle: str) -> list[str]:
        return [m for m in map(formatEvent, events) if needle in m]

    def test_duplicate_login_is_logged_like_a_wrong_password(self) -> None:
        with capturedLogs() as events:
            self.send(self.connect(1), login_request("alice", "pw"))
            self.send(self.connect(2), login_request("alice", "pw"))
        [line] = self.messages(events, "Login refused")
        self.assertIn("(31) for 'alice' from 10.0.0.3:2", line)
        self.assertIn("logged in already", line)
        [event] = [e for e in events if "Login refused" in formatEvent(e)]
        self.assertEqual(event["log_level"], LogLevel.info)

    def test_login_storm_is_rate_limited(self) -> None:
        """
        A storm of logins writes at most a burst of login lines, then
        L{LOGIN_LOG_RATE} a second, and says how many it suppressed.
        """
        with capturedLogs() as events:
            for i in range(1000):
                self.send(self.connect(i), login_request(f"user{i}", "pw"))
            self.clock.advance(1)
            self.send(self.connect(1000), login_request("late", "pw"))
        lines = self.messages(events, "Login ")
        self.assertEqual(len(lines), LOGIN_LOG_BURST + 1)
        suppressed = 1000 - LOGIN_LOG_BURST
        self.assertIn(f"({suppressed} similar messages suppressed)", lines[-1])

    def test_unknown_packets_are_rate_limited(self) -> None:
        session = self.connect()
        with capturedLogs() as events:
            for _ in range(100):
                self.send(session, encode_packet(500, b"?") * 100)
        lines = self.messages(events, "Ignored packet id 500")
        self.assertEqual(len(lines), 10)
        self.assertGreater(self.app.unknown.count, 1000)

    def test_disconnects_are_rate_limited(self) -> None:
        with capturedLogs() as events:
            for i in range(500):
                self.connect(i).connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(self.messages(events, "Disconnected")), 10)


class RedisTimeoutMessageTests(SynchronousTestCase):
    def test_timeout_message(self) -> None:
        """
        A login whose Redis lookup takes too long fails with an error that
        says so in words.
        """
        clock = MemoryReactorClock()
        login = RedisLogin(clock, RedisURL.parse("redis://127.0.0.1:1/0"), timeout=2.0)
        self.addCleanup(lambda: login._watch.stop() if login._watch.running else None)
        failures: list[Failure] = []
        ensureDeferred(login.check(b"u", b"p")).addErrback(failures.append)
        clock.advance(0)
        clock.advance(2.0)
        [failure] = failures
        self.assertEqual(failure.getErrorMessage(), "timed out after 2.0 s")
