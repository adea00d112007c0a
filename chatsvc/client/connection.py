# -*- test-case-name: tests.test_client_cli -*-
"""
C{chatsvc-client}'s connection to the server: received bytes decoded into
events, encoded requests written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, cast

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from chatsvc.protocol import Event, PacketDecoder, ProtocolError, parse_event


class _TCPTransport(Protocol):
    def write(self, data: bytes) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...


class ServerConnection(TwistedProtocol):
    """
    The connection to the server: feeds received bytes to a L{PacketDecoder}
    and hands each decoded event to C{on_event}.

    @ivar error: the protocol error that made this side abort the connection.
    @ivar closed: fires with L{None} once the connection is closed.
    """

    def __init__(self, on_event: Callable[[Event], None]) -> None:
        self.on_event = on_event
        self.decoder = PacketDecoder()
        self.error: ProtocolError | None = None
        self.closed: Deferred[None] = Deferred()

    def send(self, data: bytes) -> None:
        """
        Send encoded packets, unless the connection is going away.
        """
        transport = self._transport
        if transport is not None and self.error is None:
            transport.write(data)

    def close(self) -> None:
        """
        Close the connection once what was sent has been written.
        """
        transport = self._transport
        if transport is not None:
            transport.loseConnection()

    @property
    def _transport(self) -> _TCPTransport | None:
        return cast("_TCPTransport | None", self.transport)

    def dataReceived(self, data: bytes) -> None:
        if self.error is not None:
            return
        self.decoder.feed(data)
        try:
            while (packet := self.decoder.next_packet()) is not None:
                self.on_event(parse_event(packet))
        except ProtocolError as e:
            self.error = e
            transport = self._transport
            if transport is not None:
                transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)


__all__ = ["ServerConnection"]
