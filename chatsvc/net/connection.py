# -*- test-case-name: tests.test_connection -*-
"""
What every stage's connections share: a session id, connection limits (in
all and per client address), a bounded kernel send buffer, an idle timeout, a
deadline the application may set, counters and a graceful shutdown.
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
from collections import Counter
from typing import Any, ClassVar, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import Logger, LogLevel
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


def client_network(address: IAddress) -> str | None:
    """
    Return what a client's connections are counted under for
    C{--max-connections-per-ip}: its IPv4 address, or the /64 network of its
    IPv6 address (one subscriber's share: providers hand out whole /64s, so
    one attacker has as many addresses as it likes inside one), or L{None}
    for an address that is not IP.
    """
    host: str | None = getattr(address, "host", None)
    if host is None or ":" not in host:
        return host
    try:
        ip = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))


class LimitedFactory(ServerFactory):
    """
    Numbers connections, refuses those above C{config.max_connections} or
    above C{config.max_connections_per_ip} from one client address, tracks the
    open ones and closes them all, gracefully, on L{shutdown}.

    @ivar stats: counters for the metrics exporter.
    """

    log: ClassVar[Logger] = Logger()
    noisy = False

    def __init__(self, config: NetConfig, reactor: IReactorTime | None = None) -> None:
        self.config = config
        self.reactor = reactor or default_reactor()
        self.connections: dict[int, ManagedConnection] = {}
        self.per_network: Counter[str] = Counter()
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
        network = client_network(addr)
        per_ip = self.config.max_connections_per_ip
        if per_ip and network is not None and self.per_network[network] >= per_ip:
            self.stats.refused_per_ip += 1
            self.warnings.warn(
                "Refused {peer}: {limit} connections open from {network}"
                " (--max-connections-per-ip)",
                peer=describe_peer(addr),
                limit=per_ip,
                network=network,
            )
            return None
        connection: ManagedConnection = super().buildProtocol(addr)  # type: ignore[assignment]
        connection.session_id = next(self._ids)
        connection.network = network
        return connection

    def connection_opened(self, connection: ManagedConnection) -> None:
        """
        Count C{connection} as open.
        """
        self.connections[connection.session_id] = connection
        if connection.network is not None:
            self.per_network[connection.network] += 1

    def connection_closed(self, connection: ManagedConnection) -> None:
        """
        Count C{connection} as closed.
        """
        if self.connections.pop(connection.session_id, None) is None:
            return
        network = connection.network
        if network is not None:
            self.per_network[network] -= 1
            if not self.per_network[network]:
                del self.per_network[network]
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
            connection.abort()


def _cancel(result: object, timer: IDelayedCall) -> object:
    if timer.active():
        timer.cancel()
    return result


class ManagedConnection(Protocol, TimeoutMixin):
    """
    A connection counted by a L{LimitedFactory}, with an idle timeout and an
    optional deadline.

    @ivar network: what the connection counts under for the per-address cap.
    """

    log: ClassVar[Logger] = Logger()
    factory: LimitedFactory
    session_id: int = 0
    network: str | None = None
    peer: str = "?"
    #: How the peer is connected: C{"tcp"}, or C{"websocket"} (see websocket.py).
    transport_kind = "tcp"
    closing = False
    _linger: IDelayedCall | None = None
    _deadline: IDelayedCall | None = None

    def callLater(self, period: float, func: Any) -> Any:
        return self.factory.reactor.callLater(period, func)

    def connectionMade(self) -> None:
        transport = self.transport
        config = self.factory.config
        self.peer = describe_peer(transport.getPeer())  # type: ignore[union-attr]
        if self.transport_kind != "tcp":
            self.peer += f" via {self.transport_kind}"
        if ITCPTransport.providedBy(transport):
            # Small packets go out at once instead of waiting for the peer's
            # delayed ACK (Nagle's algorithm), which costs up to 40 ms.
            transport.setTcpNoDelay(True)
        # The socket itself (under TLS getHandle() is the TLS connection; a
        # WebSocket session's transport hands on its TCP connection's).
        sock = getattr(transport, "socket", None)
        if config.socket_send_buffer and isinstance(sock, socket.socket):
            # Bounds what the kernel holds for a client that stops reading
            # (Linux autotunes it to megabytes otherwise, and reserves twice
            # the value set for its bookkeeping).
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, config.socket_send_buffer
            )
        self.factory.connection_opened(self)
        if config.idle_timeout:
            self.setTimeout(config.idle_timeout)

    def set_deadline(self, seconds: float, what: str) -> None:
        """
        Abort the connection in C{seconds} unless L{clear_deadline} is called
        first: how long the application gives a client to C{what} (the chat
        stage: log in). It replaces any earlier deadline; 0 sets none.
        """
        self.clear_deadline()
        if seconds:
            self._deadline = self.factory.reactor.callLater(
                seconds, self._deadline_passed, seconds, what
            )

    def clear_deadline(self) -> None:
        """
        The client did in time what the deadline waited for.
        """
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self, seconds: float, what: str) -> None:
        self._deadline = None
        if self.closing:
            return
        self.closing = True
        self.factory.stats.deadlines_missed += 1
        self.factory.warnings.emit(
            LogLevel.info,
            "Closing {peer} (session {session}): did not {what} within {seconds} s",
            peer=self.peer,
            session=self.session_id,
            what=what,
            seconds=seconds,
        )
        self.abort()

    def abort(self) -> None:
        """
        Drop the connection at once: what it has not sent yet is lost.
        """
        self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.setTimeout(None)
        self.clear_deadline()
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self.factory.connection_closed(self)
        self.factory.warnings.emit(
            LogLevel.debug,
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
            self._linger = self.callLater(linger, self.abort)

    def shut_down(self) -> None:
        """
        The server is stopping: close once queued output is written (the
        factory aborts what is still open after the grace period).
        """
        self.finish()

    def timeoutConnection(self) -> None:
        self.factory.stats.idle_timeouts += 1
        self.factory.warnings.emit(
            LogLevel.info,
            "Closing {peer} (session {session}): idle for {seconds} s",
            peer=self.peer,
            session=self.session_id,
            seconds=self.factory.config.idle_timeout,
        )
        self.abort()
