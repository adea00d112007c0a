"""
Tests for L{chatsvc.host.applications}: the packet-echo application of the
send-queue stage, the unknown-packet policy, and the chat application's
turns.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.content.chat import ChatConfig
from chatsvc.content.login import OpenLogin
from chatsvc.host.applications import ChatApplication, PacketEcho, UnknownPackets
from chatsvc.net.config import NetConfig
from chatsvc.net.session import Session, SessionFactory
from chatsvc.protocol import (
    Packet,
    PacketDecoder,
    UserLeft,
    encode_packet,
    enter_room_request,
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
        self.assertEqual(app.unknown.counts, {500: 1})
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


def decode(transport: HalfCloseTransport) -> list[Packet]:
    decoder = PacketDecoder()
    decoder.feed(transport.value())
    return decoder.read_batch(1000)
