# -*- test-case-name: tests.test_websocket -*-
"""
WebSocket sessions: a browser's connection as an ordinary L{Session}.

Twisted's L{twisted.web.websocket} does the HTTP upgrade and the framing. Each
binary message a client sends carries one or more whole packets of the same
protocol as TCP; each write of a session's send queue (everything queued for
it in one reactor turn) leaves as one binary message. L{WebSocketSession}
sits between the two: to Twisted it is the L{WebSocketProtocol}, to the
L{Session} it is the transport. The session, its send queue, its limits and
the application are the same code as for TCP; only the bytes travel in
messages instead of a stream.

Two things Twisted's WebSocket transport leaves to its user:

  - Size. Twisted reassembles a message in memory before delivering it, with
    no limit. The frames are therefore counted as wsproto decodes them, before
    Twisted buffers them: a frame larger than C{max_packet_size} or a message
    larger than C{input_buffer_limit} closes the connection (code 1009) when
    its first byte over the limit arrives.
  - Backpressure. After the upgrade the HTTP channel stays registered as the
    TCP transport's producer, so C{WebSocketTransport.attachProducer} would
    raise on the server; the send queue is registered with the upgraded
    request instead, whose channel hands the transport's pause and resume on
    to it. A browser that stops reading is then cut off as a slow consumer,
    as a TCP client is.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from twisted.internet.interfaces import IAddress, IPushProducer, ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from twisted.web.websocket import WebSocketTransport
from wsproto.connection import ConnectionState
from wsproto.events import Event, Message
from wsproto.utilities import LocalProtocolError
from zope.interface import implementer

from chatsvc.net.session import Session, SessionFactory
from chatsvc.protocol import HEADER_SIZE, ProtocolError

#: The C{transport_kind} of WebSocket sessions (a label of the metrics).
WEBSOCKET: Final = "websocket"

#: Close codes (RFC 6455, section 7.4.1, and IANA's registry).
CLOSE_NORMAL: Final = 1000
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_UNSUPPORTED_DATA: Final = 1003
CLOSE_TOO_BIG: Final = 1009
CLOSE_TRY_AGAIN_LATER: Final = 1013

_LENGTH = struct.Struct("<H")


def partial_packet(
    message: bytes | bytearray, max_packet_size: int
) -> ProtocolError | None:
    """
    Return the error of a message that does not end on a packet boundary.

    A length field out of range is left to the session's decoder, which
    reports it in order, after the packets before it.
    """
    offset = 0
    size = len(message)
    while size - offset >= HEADER_SIZE:
        (length,) = _LENGTH.unpack_from(message, offset)
        if not HEADER_SIZE <= length <= max_packet_size:
            return None
        offset += length
    if offset == size:
        return None
    return ProtocolError(
        f"WebSocket message of {size} bytes ends inside a packet", "truncated"
    )


class _SizeLimit:
    """
    Stands in for wsproto's connection inside Twisted's WebSocket protocol
    and stops the events of a frame or a message that grows past its limit.
    """

    def __init__(
        self,
        connection: Any,
        frame_limit: int,
        message_limit: int,
        exceeded: Callable[[str], None],
    ) -> None:
        self._connection = connection
        self._frame_limit = frame_limit
        self._message_limit = message_limit
        self._exceeded = exceeded
        self._frame = 0
        self._message = 0
        self.refused = False

    @property
    def state(self) -> ConnectionState:
        state: ConnectionState = self._connection.state
        return state

    def send(self, event: Event) -> bytes:
        data: bytes = self._connection.send(event)
        return data

    def receive_data(self, data: bytes | None) -> None:
        if not self.refused:
            self._connection.receive_data(data)

    def events(self) -> Iterator[Event]:
        if self.refused:
            return
        for event in self._connection.events():
            if isinstance(event, Message):
                size = len(event.data)
                self._frame += size
                self._message += size
                if self._frame > self._frame_limit:
                    self._refuse(f"a frame above {self._frame_limit} bytes")
                    return
                if self._message > self._message_limit:
                    self._refuse(f"a message above {self._message_limit} bytes")
                    return
                if event.frame_finished:
                    self._frame = 0
                if event.message_finished:
                    self._message = 0
            yield event

    def _refuse(self, what: str) -> None:
        self.refused = True
        self._exceeded(what)


@implementer(ITransport, IPushProducer)
class WebSocketSession:
    """
    One WebSocket connection: Twisted's L{WebSocketProtocol} outside, the
    transport of an ordinary L{Session} inside.

    @ivar session: the session, once the connection is open and accepted.
    """

    log = Logger()

    def __init__(self, factory: SessionFactory, request: Request) -> None:
        self._factory = factory
        self._request = request
        self._websocket: Any = None
        self._limit: _SizeLimit | None = None
        self._closed = False
        self.session: Session | None = None

    # --- WebSocketProtocol: what Twisted tells us -------------------------

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self._websocket = transport
        config = self._factory.config
        self._limit = _SizeLimit(
            transport._wsconn,  # type: ignore[attr-defined]
            config.max_packet_size,
            config.input_buffer_limit,
            self._too_big,
        )
        transport._wsconn = self._limit  # type: ignore[attr-defined]

    def negotiationFinished(self) -> None:
        address = self.getPeer()
        session = self._factory.buildProtocol(address)
        if session is None:
            # Refused and logged by the factory; the close code tells the
            # browser why.
            self._close(CLOSE_TRY_AGAIN_LATER, "server full")
            return
        session.transport_kind = WEBSOCKET
        self.session = session
        session.makeConnection(self)
        self.log.debug(
            "WebSocket session {session} from {peer}, origin {origin}",
            session=session.session_id,
            peer=session.peer,
            origin=_header(self._request, b"origin") or "none",
        )

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        session = self.session
        if session is None or session.closing:
            return
        error = partial_packet(data, self._factory.config.max_packet_size)
        if error is not None:
            self._refuse(session, error, CLOSE_PROTOCOL_ERROR)
            return
        session.dataReceived(bytes(data))

    def textMessageReceived(self, message: str) -> None:
        session = self.session
        if session is not None and not session.closing:
            error = ProtocolError("a text message (packets are binary)", "body")
            self._refuse(session, error, CLOSE_UNSUPPORTED_DATA)

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self._closed = True
        if self.session is not None:
            self.session.connectionLost(reason)

    def _too_big(self, what: str) -> None:
        session = self.session
        if session is None or session.closing:
            self._close(CLOSE_TOO_BIG, "message too big")
            return
        self._refuse(
            session, ProtocolError(f"{what} (WebSocket)", "length"), CLOSE_TOO_BIG
        )

    def _refuse(self, session: Session, error: ProtocolError, code: int) -> None:
        """
        A protocol error, counted and logged as on TCP; the peer is told why
        in a close frame before the connection is closed.
        """
        session.closing = True
        self._factory.stats.protocol_errors[error.kind] += 1
        self._factory.warnings.warn(
            "Protocol error from {peer} (session {session}): {reason}; disconnecting",
            peer=session.peer,
            session=session.session_id,
            reason=error.reason,
        )
        self._close(code, error.reason[:120])

    def _close(self, code: int, reason: str = "") -> None:
        """
        Send a close frame (once) and close the TCP connection after it.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._websocket.loseConnection(code, reason)
        except LocalProtocolError:
            # The peer's close came first; Twisted answered it already.
            self._tcp.loseConnection()

    # --- the transport the session writes to ------------------------------

    @property
    def _tcp(self) -> Any:
        return self._websocket.transport

    @property
    def socket(self) -> Any:
        """
        The TCP connection's socket, where it has one: the session bounds its
        kernel send buffer as it does a TCP client's.
        """
        return getattr(self._tcp, "socket", None)

    def write(self, data: bytes) -> None:
        limit = self._limit
        if self._closed or limit is None or limit.state is not ConnectionState.OPEN:
            return
        self._websocket.sendBytesMessage(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self._close(CLOSE_NORMAL)

    def loseWriteConnection(self) -> None:
        # The close frame is the end of our output; the peer answers with
        # its own, and Twisted closes the TCP connection after writing it.
        self._close(CLOSE_NORMAL)

    def abortConnection(self) -> None:
        self._closed = True
        self._tcp.abortConnection()

    def getPeer(self) -> IAddress:
        address: IAddress = self._tcp.getPeer()
        return address

    def getHost(self) -> IAddress:
        address: IAddress = self._tcp.getHost()
        return address

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        self._request.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._request.unregisterProducer()

    def pauseProducing(self) -> None:
        self._tcp.pauseProducing()

    def resumeProducing(self) -> None:
        self._tcp.resumeProducing()

    def stopProducing(self) -> None:
        self._tcp.stopProducing()


def _header(request: Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1") if isinstance(value, bytes) else value


class WebSocketSessions:
    """
    Twisted's L{WebSocketServerFactory} for the sessions of a
    L{SessionFactory}: WebSocket connections count against the same
    C{--max-connections} and run the same application as TCP ones.
    """

    def __init__(self, factory: SessionFactory) -> None:
        self.factory = factory

    def buildProtocol(self, request: Request) -> WebSocketSession:
        return WebSocketSession(self.factory, request)


__all__ = [
    "WEBSOCKET",
    "WebSocketSession",
    "WebSocketSessions",
    "partial_packet",
]
