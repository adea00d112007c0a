# -*- test-case-name: tests.test_connection -*-
"""
What every stage's connections share: a session id, a connection limit, an
idle timeout, counters and a graceful shutdown.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from chatsvc.net.config import NetConfig
from chatsvc.net.lograte import RateLimitedLog
from chatsvc.net.stats import NetStats


def default_reactor() -> IReactorTime:
    """
    Return the global reactor (installed on first use, as Twisted does).
    """
    from twisted.internet import reactor

    return cast(IReactorTime, reactor)


def describe_peer(address: IAddress | None) -> str:
    """
    Return C{host:port} (C{[host]:port} for IPv6) for a peer address.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None:
        return str(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class LimitedFactory(ServerFactory):
    """
    Numbers connections, refuses those above C{config.max_connections}, tracks
    the open ones and closes them all, gracefully, on L{shutdown}.

    @ivar stats: counters for the metrics exporter.
    """

    log: ClassVar[Logger] = Logger()
    noisy = False

    def __init__(self, config: NetConfig, reactor: IReactorTime | None = None) -> None:
        self.config = config
        self.reactor = reactor or default_reactor()
        self.connections: dict[int, ManagedConnection] = {}
        self.stats = NetStats()
        self.warnings = RateLimitedLog(self.log, self.reactor.seconds)
        self._ids = itertools.count(1)
        self._all_closed: list[Deferred[None]] = []

    def buildProtocol(self, addr: IAddress) -> ManagedConnection | None:  # type: ignore[override]
        if len(self.connections) >= self.config.max_connections:
            self.stats.refused += 1
            self.warnings.warn(
                "Refused {peer}: {limit} connections open (--max-connections)",
                peer=describe_peer(addr),
                limit=self.config.max_connections,
            )
            return None
        connection: ManagedConnection = super().buildProtocol(addr)  # type: ignore[assignment]
        connection.session_id = next(self._ids)
        return connection

    def connection_opened(self, connection: ManagedConnection) -> None:
        """
        Count C{connection} as open.
        """
        self.connections[connection.session_id] = connection

    def connection_closed(self, connection: ManagedConnection) -> None:
        """
        Count C{connection} as closed.
        """
        self.connections.pop(connection.session_id, None)
        if not self.connections:
            waiting, self._all_closed = self._all_closed, []
            for d in waiting:
                d.callback(None)

    def shutdown(self, grace: float) -> Deferred[None]:
        """
        Close every connection once its queued output is written; abort those
        still open after C{grace} seconds. Fires when all are closed.
        """
        for connection in list(self.connections.values()):
            connection.shut_down()
        if not self.connections:
            return succeed(None)
        closed: Deferred[None] = Deferred()
        self._all_closed.append(closed)
        timer = self.reactor.callLater(grace, self._abort_all, grace)
        return closed.addBoth(_cancel, timer)

    def _abort_all(self, grace: float) -> None:
        self.log.warn(
            "{count} connections still sending after {grace} s; aborting them",
            count=len(self.connections),
            grace=grace,
        )
        for connection in list(self.connections.values()):
            connection.transport.abortConnection()  # type: ignore[union-attr]


def _cancel(result: object, timer: IDelayedCall) -> object:
    if timer.active():
        timer.cancel()
    return result


class ManagedConnection(Protocol, TimeoutMixin):
    """
    A connection counted by a L{LimitedFactory}, with an idle timeout.
    """

    log: ClassVar[Logger] = Logger()
    factory: LimitedFactory
    session_id: int = 0
    peer: str = "?"
    #: How the peer is connected: C{"tcp"}, or C{"websocket"} (see websocket.py).
    transport_kind = "tcp"
    closing = False
    _linger: IDelayedCall | None = None

    def callLater(self, period: float, func: Any) -> Any:
        return self.factory.reactor.callLater(period, func)

    def connectionMade(self) -> None:
        transport = self.transport
        self.peer = describe_peer(transport.getPeer())  # type: ignore[union-attr]
        if self.transport_kind != "tcp":
            self.peer += f" via {self.transport_kind}"
        if ITCPTransport.providedBy(transport):
            # Small packets go out at once instead of waiting for the peer's
            # delayed ACK (Nagle's algorithm), which costs up to 40 ms.
            transport.setTcpNoDelay(True)
        self.factory.connection_opened(self)
        if self.factory.config.idle_timeout:
            self.setTimeout(self.factory.config.idle_timeout)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.setTimeout(None)
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self.factory.connection_closed(self)
        self.log.debug(
            "Disconnected {peer} (session {session}): {reason}",
            peer=self.peer,
            session=self.session_id,
            # The IOCP reactor may report a half-closed connection's end as None.
            reason=reason.getErrorMessage() if reason is not None else "closed",
        )

    def finish(self, linger: float | None = None) -> None:
        """
        Close gracefully: send what the transport holds, then end our side of
        the stream, and discard input until the peer closes its side.

        Closing outright while the peer is still sending would make the kernel
        reset the connection, and a reset can destroy data the peer has
        received but not yet read. After C{linger} seconds the connection is
        aborted anyway.
        """
        self.closing = True
        self.transport.loseWriteConnection()  # type: ignore[union-attr]
        if linger is not None:
            self._linger = self.callLater(linger, self.transport.abortConnection)  # type: ignore[union-attr]

    def shut_down(self) -> None:
        """
        The server is stopping: close once queued output is written (the
        factory aborts what is still open after the grace period).
        """
        self.finish()

    def timeoutConnection(self) -> None:
        self.factory.stats.idle_timeouts += 1
        self.log.info(
            "Closing {peer} (session {session}): idle for {seconds} s",
            peer=self.peer,
            session=self.session_id,
            seconds=self.factory.config.idle_timeout,
        )
        self.transport.abortConnection()  # type: ignore[union-attr]
