"""
Tests for L{chatsvc.net.connection}: connection limit and idle timeout.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.net.config import NetConfig
from chatsvc.net.connection import describe_peer
from chatsvc.net.echo import EchoFactory
from tests.support import HalfCloseTransport


class ConnectionLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.factory = EchoFactory(NetConfig(max_connections=2), self.reactor)

    def open(self, port: int) -> object:
        addr = IPv4Address("TCP", "127.0.0.1", port)
        protocol = self.factory.buildProtocol(addr)
        if protocol is not None:
            protocol.makeConnection(StringTransport(peerAddress=addr))
        return protocol

    def test_refused_above_limit(self) -> None:
        self.assertIsNotNone(self.open(1))
        self.assertIsNotNone(self.open(2))
        with capturedLogs() as events:
            self.assertIsNone(self.open(3))
        self.assertEqual(self.factory.stats.refused, 1)
        self.assertEqual(events[0]["peer"], "127.0.0.1:3")
        self.assertEqual(events[0]["limit"], 2)

    def test_room_again_after_close(self) -> None:
        first = self.open(1)
        self.open(2)
        first.connectionLost(Failure(ConnectionError()))  # type: ignore[attr-defined]
        self.assertIsNotNone(self.open(3))


class ShutdownTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.factory = EchoFactory(NetConfig(), self.reactor)
        self.transports = []
        for port in (1, 2):
            addr = IPv4Address("TCP", "127.0.0.1", port)
            protocol = self.factory.buildProtocol(addr)
            transport = HalfCloseTransport(peerAddress=addr)
            protocol.makeConnection(transport)  # type: ignore[union-attr]
            self.transports.append((protocol, transport))

    def test_closes_gracefully(self) -> None:
        done = self.factory.shutdown(5)
        self.assertTrue(all(t.write_closed for _, t in self.transports))
        self.assertNoResult(done)
        for protocol, _ in self.transports:
            protocol.connectionLost(Failure(ConnectionError()))  # type: ignore[union-attr]
        self.successResultOf(done)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_aborts_after_grace(self) -> None:
        aborted = []
        for protocol, transport in self.transports:
            transport.abortConnection = (  # type: ignore[method-assign]
                lambda p=protocol: (
                    aborted.append(p),
                    p.connectionLost(Failure(ConnectionError())),
                )
            )
        done = self.factory.shutdown(5)
        self.reactor.advance(4.9)
        self.assertNoResult(done)
        with capturedLogs():
            self.reactor.advance(0.2)
        self.assertEqual(len(aborted), 2)
        self.successResultOf(done)

    def test_nothing_open(self) -> None:
        factory = EchoFactory(NetConfig(), self.reactor)
        self.successResultOf(factory.shutdown(5))


class IdleTimeoutTests(SynchronousTestCase):
    def connect(
        self, idle: float
    ) -> tuple[MemoryReactorClock, object, StringTransport]:
        reactor = MemoryReactorClock()
        factory = EchoFactory(NetConfig(idle_timeout=idle), reactor)
        addr = IPv4Address("TCP", "127.0.0.1", 1)
        protocol = factory.buildProtocol(addr)
        transport = StringTransport(peerAddress=addr)
        protocol.makeConnection(transport)  # type: ignore[union-attr]
        return reactor, protocol, transport

    def test_idle_connection_closed(self) -> None:
        reactor, protocol, transport = self.connect(30)
        reactor.advance(20)
        protocol.dataReceived(b"x")  # type: ignore[attr-defined]
        reactor.advance(20)
        self.assertFalse(transport.disconnecting)
        with capturedLogs() as events:
            reactor.advance(11)
        self.assertTrue(transport.disconnecting)
        self.assertIn("idle", events[0]["log_format"])

    def test_zero_means_never(self) -> None:
        reactor, _protocol, transport = self.connect(0)
        reactor.advance(10**6)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(reactor.getDelayedCalls(), [])


class DescribePeerTests(SynchronousTestCase):
    def test_ipv4(self) -> None:
        self.assertEqual(describe_peer(IPv4Address("TCP", "10.0.0.1", 5)), "10.0.0.1:5")

    def test_ipv6(self) -> None:
        self.assertEqual(describe_peer(IPv6Address("TCP", "::1", 5)), "[::1]:5")


class NetConfigTests(SynchronousTestCase):
    def test_invalid(self) -> None:
        for bad in (
            {"max_connections": 0},
            {"max_packet_size": 4},
            {"max_packet_size": 65536},
            {"send_queue_limit": 10},
            {"idle_timeout": -1},
            {"batch_size": 0},
        ):
            self.assertRaises(ValueError, NetConfig, **bad)  # type: ignore[arg-type]
