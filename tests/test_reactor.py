"""
Tests for L{chatsvc.net.reactor}: Twisted's epoll reactor without the
per-event log context, reading TCP connections in its loop.
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import Any

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.python import context, log
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

if sys.platform == "linux":
    from chatsvc.net.reactor import EPollReactor


class Recorder(Protocol):
    """
    Records what it reads and the legacy log's system while it reads.
    """

    def __init__(self) -> None:
        self.received = b""
        self.systems: list[str] = []
        self.lost = False
        self.reason: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self.systems.append(context.get(log.ILogContext)["system"])
        if b"boom" in data:
            raise RuntimeError("boom")

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = True
        self.reason = reason


@implementer(IHalfCloseableProtocol)
class HalfCloseRecorder(Recorder):
    """
    A L{Recorder} told when its peer stops sending, and then writing back.
    """

    def readConnectionLost(self) -> None:
        self.transport.write(b"bye")  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass


class EPollReactorTests(SynchronousTestCase):
    """
    L{EPollReactor} reads, accepts and disconnects as Twisted's does.
    """

    protocol_class: type[Recorder] = Recorder

    def setUp(self) -> None:
        self.reactor: Any = EPollReactor()
        self.addCleanup(self.reactor.disconnectAll)
        self.protocol = self.protocol_class()
        factory = Factory.forProtocol(lambda: self.protocol)
        self.port = self.reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    def turn_until(self, done: Any) -> None:
        for _ in range(200):
            if done():
                return
            self.reactor.iterate(0.01)
        self.fail("the reactor did not get there")

    def test_reads_without_the_log_context(self) -> None:
        """
        A connection's data reaches its protocol, outside any legacy log
        context of the connection's (Twisted's epoll reactor would set the
        system to the connection's log prefix).
        """
        client = socket.create_connection(("127.0.0.1", self.port.getHost().port))
        self.addCleanup(client.close)
        client.sendall(b"hello")
        self.turn_until(lambda: self.protocol.received == b"hello")
        self.assertEqual(self.protocol.systems, ["-"])
        client.close()
        self.turn_until(lambda: self.protocol.lost)

    def connect(self) -> socket.socket:
        client = socket.create_connection(("127.0.0.1", self.port.getHost().port))
        self.addCleanup(client.close)
        return client

    def test_end_of_stream(self) -> None:
        """
        The peer closing is a clean close for the protocol.
        """
        client = self.connect()
        client.sendall(b"last")
        client.close()
        self.turn_until(lambda: self.protocol.lost)
        self.assertEqual(self.protocol.received, b"last")
        assert self.protocol.reason is not None
        self.assertTrue(self.protocol.reason.check(ConnectionDone))

    def test_reset(self) -> None:
        """
        A read that fails (the peer reset the connection) loses it.
        """
        client = self.connect()
        client.sendall(b"x")
        self.turn_until(lambda: self.protocol.received)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        self.turn_until(lambda: self.protocol.lost)
        assert self.protocol.reason is not None
        self.assertTrue(self.protocol.reason.check(ConnectionLost))

    def test_protocol_raises(self) -> None:
        """
        An exception from C{dataReceived} is logged and closes the connection.
        """
        client = self.connect()
        client.sendall(b"boom")
        self.turn_until(lambda: self.protocol.lost)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        assert self.protocol.reason is not None
        self.assertTrue(self.protocol.reason.check(RuntimeError))

    def test_timeout_none_waits_for_an_event(self) -> None:
        """
        C{doPoll(None)} waits without a limit, until a socket is ready.
        """
        client = socket.create_connection(("127.0.0.1", self.port.getHost().port))
        self.addCleanup(client.close)
        client.sendall(b"x")
        self.turn_until(lambda: self.protocol.received)
        client.sendall(b"y")
        self.reactor.doPoll(None)
        self.assertEqual(self.protocol.received, b"xy")

    def test_call_after_poll(self) -> None:
        """
        Calls given to C{callAfterPoll} run once the events of the poll are
        handled, in order; an exception is logged and the next call still
        runs; a call they add makes the next poll not wait, and runs after it.
        """
        client = self.connect()
        client.sendall(b"x")
        self.turn_until(lambda: self.protocol.received)
        seen: list[tuple[str, bytes]] = []

        def first() -> None:
            seen.append(("first", self.protocol.received))
            self.reactor.callAfterPoll(lambda: seen.append(("later", b"")))
            raise RuntimeError("after the poll")

        self.reactor.callAfterPoll(first)
        self.reactor.callAfterPoll(
            lambda: seen.append(("second", self.protocol.received))
        )
        self.assertEqual(self.reactor.timeout(), 0)
        client.sendall(b"y")
        self.reactor.doPoll(5)
        self.assertEqual(seen, [("first", b"xy"), ("second", b"xy")])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.reactor.timeout(), 0)
        self.reactor.doPoll(self.reactor.timeout())
        self.assertEqual(seen[-1], ("later", b""))
        self.assertNotEqual(self.reactor.timeout(), 0)


class HalfCloseTests(EPollReactorTests):
    """
    A protocol that accepts half-closed connections is told of the end of
    its peer's stream, and may still write.
    """

    protocol_class = HalfCloseRecorder

    def test_end_of_stream(self) -> None:
        client = self.connect()
        client.sendall(b"last")
        client.shutdown(socket.SHUT_WR)
        self.turn_until(lambda: self.protocol.lost)
        self.assertEqual(self.protocol.received, b"last")
        client.settimeout(5)
        self.assertEqual(client.recv(10), b"bye")


if sys.platform != "linux":
    del EPollReactorTests, HalfCloseTests
