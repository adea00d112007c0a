"""
Tests for L{chatsvc.net.reactor}: Twisted's epoll reactor without the
per-event log context.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.python import context, log
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

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

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self.systems.append(context.get(log.ILogContext)["system"])

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = True


class EPollReactorTests(SynchronousTestCase):
    """
    L{EPollReactor} reads, accepts and disconnects as Twisted's does.
    """

    def setUp(self) -> None:
        self.reactor: Any = EPollReactor()
        self.addCleanup(self.reactor.disconnectAll)
        self.protocol = Recorder()
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


if sys.platform != "linux":
    del EPollReactorTests
