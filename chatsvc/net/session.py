# -*- test-case-name: tests.test_session -*-
"""
The framed-protocol session: one per connection, the tutorial's OnConnect /
OnReceive / OnClose seen from the application.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from chatsvc.net.config import NetConfig
from chatsvc.net.connection import LimitedFactory, ManagedConnection
from chatsvc.net.sendqueue import SendQueue, push_to_all
from chatsvc.net.turn import Pump
from chatsvc.protocol import HEADER_SIZE, Packet, PacketDecoder, ProtocolError

#: Seconds a closed session waits for its peer to close before aborting.
CLOSE_LINGER = 10.0


class Application(Protocol):
    """
    What a stage plugs into the network layer: it is told of connections,
    packets, the end of each reactor turn and disconnections, and answers
    through L{Session.send} and L{send_to_all}.
    """

    def connected(self, session: Session) -> None:
        """
        C{session} is open.
        """

    def packets_received(self, session: Session, packets: list[Packet]) -> None:
        """
        Complete packets arrived on C{session}, in order: one batch of at most
        C{NetConfig.batch_size}; C{session.batch_bytes()} is their wire form.
        """

    def end_of_turn(self) -> None:
        """
        The reactor turn's packets are all handled: send what was held back
        for the turn (a room's notifies). What is sent now leaves at once,
        after what each session queued during the turn.
        """

    def disconnected(self, session: Session, reason: Failure) -> None:
        """
        C{session} is closed; nothing sent to it is delivered any more.
        """


def send_to_all(sessions: Iterable[Session], data: bytes) -> None:
    """
    L{Session.send} the same C{data} to each of C{sessions}, without a method
    call per session.
    """
    push_to_all([session._queue for session in sessions], data)


class Session(ManagedConnection):
    """
    Decodes one connection's packets, hands them to the application in fair
    batches and sends its answers through a L{SendQueue}.
    """

    factory: SessionFactory
    _queue: SendQueue

    def connectionMade(self) -> None:
        super().connectionMade()
        factory = self.factory
        config = factory.config
        self._app = factory.application
        self._pump = factory.pump
        self._stats = factory.stats
        self._batch_size = config.batch_size
        self._input_limit = config.input_buffer_limit
        self._idle_timeout = bool(config.idle_timeout)
        self.decoder = PacketDecoder(config.max_packet_size)
        assert self.transport is not None
        self._queue = SendQueue(
            self.transport, self._pump, config.send_queue_limit, self, self._stats
        )
        self._scheduled = False
        self._reading_paused = False
        self._output_paused = False
        self._app.connected(self)

    def batch_bytes(self) -> bytes:
        """
        The wire bytes of the batch of packets being handed to the application.
        """
        return self.decoder.batch_bytes()

    @property
    def pending_output(self) -> int:
        """
        The bytes queued for this connection and not yet handed to its
        transport.
        """
        return self._queue.pending

    def send(self, data: bytes) -> None:
        """
        Queue encoded packets for this connection: they leave with the rest of
        its output of this reactor turn.
        """
        self._queue.push(data)

    def close(self, reason: str, linger: float | None = CLOSE_LINGER) -> None:
        """
        Log C{reason} and close the connection once queued output is written
        (see L{finish}).
        """
        if self.closing:
            return
        self.log.info(
            "Closing {peer} (session {session}): {reason}",
            peer=self.peer,
            session=self.session_id,
            reason=reason,
        )
        self._queue.write_even_if_paused()
        self.finish(linger)
        if self._reading_paused:
            # Read again, discarding the input, to see the peer close its side.
            self._reading_paused = False
            self.transport.resumeProducing()  # type: ignore[union-attr]

    def shut_down(self) -> None:
        self.close("server shutting down", linger=None)

    def abort(self) -> None:
        self._queue.close()
        super().abort()

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        buffered = self.decoder.feed(data)
        if not self._scheduled and not self._output_paused:
            self._scheduled = True
            self._pump.process_in_turn(self)
        if buffered > self._input_limit and not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def process_batch(self) -> bool:
        """
        Hand at most one batch of packets to the application; return whether
        more complete packets may be waiting.

        A session closed since it was scheduled hands over nothing more: what
        the application would answer could not reach its client any more.
        """
        if self.closing:
            self._scheduled = False
            return False
        try:
            more = self._deliver_batch() == self._batch_size
        except ProtocolError as e:
            self._protocol_error(e)
            more = False
        if (
            more
            and self.decoder.buffered >= HEADER_SIZE
            and not self.closing
            and not self._output_paused
        ):
            return True
        self._scheduled = False
        if self._reading_paused:
            self._maybe_resume_reading()
        return False

    def _deliver_batch(self) -> int:
        """
        Decode one batch, count it and hand it to the application; return how
        many packets it held.

        @raise ProtocolError: after handing over the packets before the error.
        """
        decoder = self.decoder
        before = decoder.decoded_bytes
        packets = decoder.read_batch(self._batch_size)
        if packets:
            # Only complete packets count as activity: a byte now and then
            # does not keep a connection open.
            if self._idle_timeout:
                self.resetTimeout()
            self._stats.received(packets, decoder.decoded_bytes - before)
            self._app.packets_received(self, packets)
        if decoder.error is not None:
            raise decoder.error
        return len(packets)

    def _maybe_resume_reading(self) -> None:
        if (
            self._reading_paused
            and not self.closing
            and not self._output_paused
            and self.decoder.buffered <= self._input_limit
        ):
            self._reading_paused = False
            self.transport.resumeProducing()  # type: ignore[union-attr]

    def _protocol_error(self, error: ProtocolError) -> None:
        if self.closing:
            return
        self.closing = True
        self._stats.protocol_errors[error.kind] += 1
        self.factory.warnings.warn(
            "Protocol error from {peer} (session {session}): {reason}; disconnecting",
            peer=self.peer,
            session=self.session_id,
            reason=error.reason,
        )
        self.abort()

    def output_paused(self) -> None:
        self._output_paused = True
        if not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def output_resumed(self) -> None:
        self._output_paused = False
        if self.decoder.buffered and not self._scheduled and not self.closing:
            self._scheduled = True
            self._pump.process_in_turn(self)
        self._maybe_resume_reading()

    def output_overflowed(self, pending: int) -> None:
        self._queue.close()
        if self.closing:
            return
        self.closing = True
        self._stats.slow_consumers += 1
        self.factory.warnings.warn(
            "Slow consumer {peer} (session {session}): {pending} bytes unsent, "
            "over the send-queue limit of {limit}; disconnecting",
            peer=self.peer,
            session=self.session_id,
            pending=pending,
            limit=self._queue.limit,
        )
        self.abort()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._queue.close()
        if not self.closing:
            self._drain_input()
        self.closing = True
        super().connectionLost(reason)
        self._app.disconnected(self, reason)
        self._pump.run_soon()

    def _drain_input(self) -> None:
        """
        Process every complete packet that arrived before the peer closed: the
        server received them, so they are not dropped.
        """
        try:
            while self._deliver_batch() == self._batch_size:
                pass
            self.decoder.close()
        except ProtocolError as e:
            self._protocol_error(e)


class SessionFactory(LimitedFactory):
    """
    Builds L{Session}s for one application, sharing one L{Pump} that ends
    each turn with the application's C{end_of_turn}.

    Received packets are counted by id for C{known_ids} and together for
    every other id (see L{NetStats}).
    """

    protocol = Session  # type: ignore[assignment]

    def __init__(
        self,
        application: Application,
        config: NetConfig,
        reactor: IReactorTime | None = None,
        *,
        known_ids: Iterable[int] = (),
    ) -> None:
        super().__init__(config, reactor)
        self.stats.known_ids = frozenset(known_ids)
        self.application = application
        self.pump = Pump(self.reactor)
        self.pump.add_turn_hook(application.end_of_turn)

    def buildProtocol(self, addr: IAddress) -> Session | None:  # type: ignore[override]
        return super().buildProtocol(addr)  # type: ignore[return-value]
