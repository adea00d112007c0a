"""
Tests for L{chatsvc.net.connection}: connection limits, the socket send
buffer, the idle timeout and deadlines.
"""

from __future__ import annotations

import socket

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from chatsvc.net.config import NetConfig
from chatsvc.net.connection import ManagedConnection, client_network, describe_peer
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


class PerAddressLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.factory = EchoFactory(
            NetConfig(max_connections=10, max_connections_per_ip=2), self.reactor
        )

    def open(self, host: str, port: int = 1) -> ManagedConnection | None:
        addr = (IPv6Address if ":" in host else IPv4Address)("TCP", host, port)
        protocol = self.factory.buildProtocol(addr)
        if protocol is not None:
            protocol.makeConnection(StringTransport(peerAddress=addr))
        return protocol

    def test_refused_above_the_cap_others_accepted(self) -> None:
        first = self.open("10.0.0.1")
        self.assertIsNotNone(self.open("10.0.0.1"))
        with capturedLogs() as events:
            self.assertIsNone(self.open("10.0.0.1", 3))
        self.assertEqual(self.factory.stats.refused_per_ip, 1)
        self.assertEqual(self.factory.stats.refused, 0)
        self.assertEqual(events[0]["peer"], "10.0.0.1:3")
        self.assertEqual(events[0]["network"], "10.0.0.1")
        self.assertIsNotNone(self.open("10.0.0.2"))
        assert first is not None
        first.connectionLost(Failure(ConnectionError()))
        self.assertIsNotNone(self.open("10.0.0.1"))
        self.assertEqual(self.factory.per_network, {"10.0.0.1": 2, "10.0.0.2": 1})

    def test_closed_connections_are_forgotten(self) -> None:
        opened = [self.open("10.0.0.1"), self.open("10.0.0.1")]
        for protocol in opened:
            assert protocol is not None
            protocol.connectionLost(Failure(ConnectionError()))
        self.assertEqual(self.factory.per_network, {})

    def test_ipv6_counted_per_64(self) -> None:
        self.assertIsNotNone(self.open("2001:db8:1:2::1"))
        self.assertIsNotNone(self.open("2001:db8:1:2:ffff::9"))
        with capturedLogs():
            self.assertIsNone(self.open("2001:db8:1:2::3"))
        self.assertIsNotNone(self.open("2001:db8:1:3::1"))

    def test_zero_means_no_cap(self) -> None:
        self.factory = EchoFactory(
            NetConfig(max_connections=10, max_connections_per_ip=0), self.reactor
        )
        for port in range(10):
            self.assertIsNotNone(self.open("10.0.0.1", port))

    def test_global_limit_still_applies(self) -> None:
        for i in range(10):
            self.assertIsNotNone(self.open(f"10.0.0.{i}"))
        with capturedLogs():
            self.assertIsNone(self.open("10.0.0.99"))
        self.assertEqual(self.factory.stats.refused, 1)


class ClientNetworkTests(SynchronousTestCase):
    def test_ipv4(self) -> None:
        self.assertEqual(
            client_network(IPv4Address("TCP", "192.0.2.7", 5)), "192.0.2.7"
        )

    def test_ipv6_network(self) -> None:
        self.assertEqual(
            client_network(IPv6Address("TCP", "2001:db8::1:2:3:4", 5)),
            "2001:db8::/64",
        )

    def test_ipv6_scope_ignored(self) -> None:
        self.assertEqual(
            client_network(IPv6Address("TCP", "fe80::1%eth0", 5)), "fe80::/64"
        )

    def test_ipv4_mapped(self) -> None:
        self.assertEqual(
            client_network(IPv6Address("TCP", "::ffff:192.0.2.7", 5)), "192.0.2.7"
        )

    def test_not_ip(self) -> None:
        self.assertIsNone(client_network(object()))  # type: ignore[arg-type]


@implementer(ITCPTransport)
class SocketTransport(StringTransport):
    """
    A L{StringTransport} with a real (unconnected) socket, where Twisted's TCP
    transports keep theirs.
    """

    def __init__(self) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 1))
        self.socket = socket.socket()
        self.no_delay = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled


class SocketOptionTests(SynchronousTestCase):
    def connect(self, config: NetConfig) -> SocketTransport:
        factory = EchoFactory(config, MemoryReactorClock())
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = SocketTransport()
        self.addCleanup(transport.socket.close)
        protocol.makeConnection(transport)  # type: ignore[union-attr]
        return transport

    def send_buffer(self, transport: SocketTransport) -> int:
        return transport.socket.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)

    def test_send_buffer_set(self) -> None:
        transport = self.connect(NetConfig(socket_send_buffer=48 * 1024))
        # Linux reports twice the value set (it adds room for bookkeeping).
        self.assertIn(self.send_buffer(transport), (48 * 1024, 96 * 1024))
        self.assertTrue(transport.no_delay)

    def test_zero_leaves_the_kernel_default(self) -> None:
        with socket.socket() as fresh:
            default = fresh.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        transport = self.connect(NetConfig(socket_send_buffer=0))
        self.assertEqual(self.send_buffer(transport), default)


class DeadlineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.factory = EchoFactory(NetConfig(), self.reactor)
        addr = IPv4Address("TCP", "127.0.0.1", 1)
        self.protocol: ManagedConnection = self.factory.buildProtocol(addr)  # type: ignore[assignment]
        self.transport = HalfCloseTransport(peerAddress=addr)
        self.protocol.makeConnection(self.transport)

    def test_aborted_at_the_deadline(self) -> None:
        self.protocol.set_deadline(10, "log in")
        self.reactor.advance(9.9)
        self.assertFalse(self.transport.aborted)
        with capturedLogs() as events:
            self.reactor.advance(0.1)
        self.assertTrue(self.transport.aborted)
        self.assertEqual(self.factory.stats.deadlines_missed, 1)
        [event] = events
        self.assertEqual(event["log_level"], LogLevel.info)
        self.assertEqual(event["what"], "log in")
        self.assertEqual(event["seconds"], 10)

    def test_cleared_in_time(self) -> None:
        self.protocol.set_deadline(10, "log in")
        self.reactor.advance(5)
        self.protocol.clear_deadline()
        self.reactor.advance(100)
        self.assertFalse(self.transport.aborted)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_zero_sets_none(self) -> None:
        self.protocol.set_deadline(0, "log in")
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_cancelled_when_the_connection_closes(self) -> None:
        self.protocol.set_deadline(10, "log in")
        with capturedLogs():
            self.protocol.connectionLost(Failure(ConnectionError()))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_log_lines_are_rate_limited(self) -> None:
        connections = []
        for i in range(100):
            addr = IPv4Address("TCP", f"10.0.0.{i}", 1)
            protocol: ManagedConnection = self.factory.buildProtocol(addr)  # type: ignore[assignment]
            protocol.makeConnection(HalfCloseTransport(peerAddress=addr))
            protocol.set_deadline(10, "log in")
            connections.append(protocol)
        with capturedLogs() as events:
            self.reactor.advance(10)
        self.assertEqual(self.factory.stats.deadlines_missed, 100)
        self.assertLess(len(events), 20)


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
            {"max_connections_per_ip": -1},
            {"socket_send_buffer": -1},
            {"max_packet_size": 4},
            {"max_packet_size": 65536},
            {"send_queue_limit": 10},
            {"idle_timeout": -1},
            {"batch_size": 0},
        ):
            self.assertRaises(ValueError, NetConfig, **bad)  # type: ignore[arg-type]
