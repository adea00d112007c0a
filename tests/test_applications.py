"""
Tests for L{chatsvc.host.applications}: the packet-echo application of the
send-queue stage and the unknown-packet policy.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.host.applications import PacketEcho, UnknownPackets
from chatsvc.net.config import NetConfig
from chatsvc.net.session import Session, SessionFactory
from chatsvc.protocol import encode_packet
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
