# -*- test-case-name: tests.test_session -*-
"""
The per-connection send queue: the tutorial's "one send in flight", the
Twisted way.

Everything queued for a connection during one reactor turn leaves as one
C{transport.write}. The transport keeps at most its C{bufferSize} unsent; above
that it pauses this queue (it is registered as the transport's streaming
producer), and the queue holds further output itself, up to C{limit} bytes.
Past that the receiver is too slow to keep up and the owner is told to cut it
off, so one slow reader never costs unbounded memory or delays anybody else.

Writing on the readiness-based reactors (epoll, poll, select): a plain
C{transport.write} only buffers and arms the socket for writing, and the
reactor sends on its next pass and disarms it again; on epoll that is two
C{epoll_ctl} system calls for every write, which costs more than the send
itself. When nothing is waiting in the transport, the queue therefore sends
at once on the transport's socket (one C{send}, the call the reactor would
make) and hands only what the socket did not take, or the data of a send that
failed, to C{transport.write}, which deals with it as it would have. The
IOCP reactor has no such cost (every write is a C{WSASend} completing on the
port), and its transports always get C{transport.write}.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from twisted.internet import tcp
from twisted.internet.interfaces import IPushProducer, ITransport
from zope.interface import implementer

from chatsvc.net.stats import NetStats
from chatsvc.net.turn import Pump


class SendQueueOwner(Protocol):
    """
    Told when the queue's receiver falls behind or catches up.
    """

    def output_paused(self) -> None:
        """
        The transport's buffer is full: stop producing input-driven output.
        """

    def output_resumed(self) -> None:
        """
        The transport drained its buffer.
        """

    def output_overflowed(self, pending: int) -> None:
        """
        More than the queue's limit is waiting: the receiver is too slow.
        """


@implementer(IPushProducer)
class SendQueue:
    """
    Output for one connection, coalesced per reactor turn and bounded in bytes.
    """

    __slots__ = (
        "_chunks",
        "_owner",
        "_pump",
        "_scheduled",
        "_send",
        "_stats",
        "_transport",
        "_written_turn",
        "closed",
        "limit",
        "paused",
        "pending",
    )

    def __init__(
        self,
        transport: ITransport,
        pump: Pump,
        limit: int,
        owner: SendQueueOwner,
        stats: NetStats,
    ) -> None:
        self._transport = transport
        self._send: Callable[[bytes], int] | None = (
            transport.getHandle().send
            if isinstance(transport, tcp.Connection)
            else None
        )
        self._stats = stats
        self._pump = pump
        self._owner = owner
        self._chunks: list[bytes] = []
        self._scheduled = False
        self._written_turn = -1
        self.limit = limit
        self.pending = 0
        self.paused = False
        self.closed = False
        transport.registerProducer(self, True)  # type: ignore[attr-defined]

    def push(self, data: bytes) -> None:
        """
        Queue C{data} to be written at the end of this reactor turn.

        Output pushed while the turn is ending (a room's notifies) to a queue
        that wrote nothing yet this turn goes out at once, after what the
        queue holds: it is the connection's last output of the turn.
        """
        if self.closed:
            return
        pump = self._pump
        if pump.flushing and not self.paused and self._written_turn != pump.turn:
            self._chunks.append(data)
            self.drain()
            return
        self._chunks.append(data)
        self.pending += len(data)
        if self.pending > self.limit:
            self._owner.output_overflowed(self.pending)
        elif not self._scheduled and not self.paused:
            self._scheduled = True
            self._pump.dirty(self)

    def flush(self) -> None:
        """
        Hand everything queued to the transport as one write.
        """
        self._scheduled = False
        if not self.paused:
            self.drain()

    def drain(self) -> None:
        """
        Hand everything queued to the transport now, even while it is paused
        (the transport buffers it): for a connection about to close.
        """
        chunks = self._chunks
        if self.closed or not chunks:
            return
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.pending = 0
        self._stats.bytes_out += len(data)
        self._written_turn = self._pump.turn
        _send_now((self,), data)

    def close(self) -> None:
        """
        Drop whatever is queued and accept nothing more.
        """
        self.closed = True
        self._chunks.clear()
        self.pending = 0

    def pauseProducing(self) -> None:
        self.paused = True
        self._owner.output_paused()

    def resumeProducing(self) -> None:
        self.paused = False
        self.flush()
        if not self.paused:
            self._owner.output_resumed()

    def stopProducing(self) -> None:
        self.close()


def push_to_all(queues: Iterable[SendQueue], data: bytes) -> None:
    """
    L{SendQueue.push} the same C{data} to each of C{queues}: a room's notifies.

    This runs for every member of every room with news, every turn, so the
    queues that send at once (the turn is ending, they hold nothing and wrote
    nothing yet this turn) are picked out here and written together, without
    a method call per queue; the others take the data through C{push}.
    """
    size = len(data)
    now = []
    for queue in queues:
        pump = queue._pump
        if (
            pump.flushing
            and queue._written_turn != pump.turn
            and not queue._chunks
            and not queue.paused
            and not queue.closed
        ):
            queue._written_turn = pump.turn
            queue._stats.bytes_out += size
            now.append(queue)
        else:
            queue.push(data)
    _send_now(now, data)


def _send_now(queues: Iterable[SendQueue], data: bytes) -> None:
    """
    Hand C{data} to each queue's transport: straight to its socket when the
    transport holds nothing unsent (see the module's docstring), else, and
    for whatever the socket did not take, to C{transport.write}.
    """
    size = len(data)
    for queue in queues:
        transport: Any = queue._transport
        send = queue._send
        if (
            send is not None
            and not transport._tempDataLen
            and not transport.dataBuffer
            and transport.connected
            and not transport.disconnecting
            and not transport.TLS
        ):
            try:
                written = send(data)
            except OSError:
                written = 0  # would block, or broken: the transport finds out
            if written == size:
                continue
            transport.write(data[written:])
        else:
            transport.write(data)
