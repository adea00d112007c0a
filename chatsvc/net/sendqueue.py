# -*- test-case-name: tests.test_session,tests.test_sendqueue -*-
"""
The per-connection send queue: the tutorial's "one send in flight", the
Twisted way.

Everything queued for a connection during one reactor turn leaves as one
C{transport.write}. The transport keeps at most its C{bufferSize} unsent; above
that it pauses this queue (it is registered as the transport's streaming
producer), and the queue holds further output itself, up to C{limit} bytes.
Past that the receiver is too slow to keep up and the owner is told to cut it
off, so one slow reader never costs unbounded memory or delays anybody else.

When output leaves is decided in one place, L{push_to_all}: while the turn
ends, a queue that is not paused and wrote nothing yet this turn writes at
once (what it is given is its last output of the turn); otherwise output
waits for the end of the turn.

Writing on the readiness-based reactors (epoll, poll, select): a plain
C{transport.write} only buffers and arms the socket for writing, and the
reactor sends on its next pass and disarms it again; on epoll that is two
C{epoll_ctl} system calls for every write, which costs more than the send
itself. When nothing is waiting in the transport, the queue therefore sends
at once on the transport's socket (one C{send}, the call the reactor would
make) and hands only what the socket did not take, or the data of a send that
failed, to C{transport.write}, which deals with it as it would have. The
IOCP reactor has no such cost (every write is a C{WSASend} completing on the
port), and its transports always get C{transport.write}. L{transport_writers}
is the only code that looks inside a Twisted transport to do this (the
cluster's Redis connections write through it too).

A queue whose last write went straight to the socket and that holds nothing
is I{clean}: nothing can be waiting in its transport but what the queue
itself handed over, so its next write may go straight to the socket without
looking at the transport again. L{push_to_all} sends a room's bytes to the
sockets of all its clean queues in one call of the C helper
L{chatsvc.net._fanout} where it is built (setup.py: a C{send()} per socket,
without the argument parsing, GIL release and result object of each
C{socket.send}; on Linux, large bytes for many sockets are copied into a
pipe once and spliced into each socket without a copy), else with one C{map}
over the sockets' C{send}. A queue whose last write went straight to the
socket and that holds only this turn's output (a member that sent requests
in the turn holds their answers) has it sent first in the same call. A queue
stops being clean when it holds output or a write goes through the
transport, and becomes clean again when a write finds the transport empty
and the socket takes everything; an aborted connection's queue is closed
(L{SendQueue.close}). chatsvc never switches a session's connection to TLS
(C{startTLS}); a TLS listener's sessions have transports that are not a
L{tcp.Connection} and are never clean.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterable
from contextlib import suppress
from itertools import islice, repeat
from operator import attrgetter, call
from typing import Any, NamedTuple, Protocol

from twisted.internet import tcp
from twisted.internet.interfaces import IPushProducer, ITransport
from zope.interface import implementer

from chatsvc.net.stats import NetStats
from chatsvc.net.turn import Pump

_SendEach = Callable[
    [list[int], bytes, int, list[bytes] | None], tuple[int, int] | None
]
_send_each: _SendEach | None
try:
    from chatsvc.net._fanout import send_each as _send_each
except ImportError:  # not built (see setup.py): the sockets' own send
    _send_each = None

#: C{SendQueue._written_turn} of a queue that wrote in no turn yet, and of one
#: that must not write at once (paused or closed): every turn number is above
#: the first and below the second.
_NOT_YET = -1
_BLOCKED = sys.maxsize


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


class Writers(NamedTuple):
    """
    How a send queue writes to its transport: L{transport_writers}.
    """

    write: Callable[[bytes], bool]
    """Write bytes; return whether they all went straight to the socket."""

    write_sequence: Callable[[list[bytes], int], bool]
    """Write a list of byte strings (their total size given) as one write;
    return whether they all went straight to the socket."""

    send: Callable[[bytes], int] | None = None
    """The socket's C{send}, when the writers may send on it."""

    fd: int = -1
    """The socket's file descriptor, when the writers may send on it and it
    is a real socket."""


#: The most byte strings given to one C{sendmsg}, within every system's
#: C{IOV_MAX}; a longer list is joined first.
MAX_IOVEC = 512


def transport_writers(transport: ITransport) -> Writers:
    """
    Return functions that write on C{transport} as C{transport.write} and
    C{transport.writeSequence} would, sending straight on the socket when
    that is the same thing.

    That is the case for a plain TCP connection of a readiness-based reactor
    (a L{tcp.Connection}, which IOCP's and TLS's transports are not) that is
    connected, not closing, not switched to TLS with C{startTLS}, and holds
    nothing unsent (neither in C{dataBuffer} nor in the writes not yet joined
    to it, C{_tempDataLen}). A list of byte strings then leaves in one
    C{sendmsg}, without joining them first. Anything else, and whatever the
    socket does not take at once, goes through C{transport.write}, as one
    write. Each writer returns whether everything went straight to the
    socket; C{send} is the socket's, or L{None} for other transports.
    """
    write = transport.write
    if not isinstance(transport, tcp.Connection):

        def write_through(data: bytes) -> bool:
            write(data)
            return False

        return Writers(
            write_through, lambda chunks, size: write_through(b"".join(chunks))
        )
    connection: Any = transport
    sock = connection.getHandle()
    send = sock.send
    sendmsg = sock.sendmsg
    # Read below for every write: as attributes of the connection itself
    # rather than defaults of its class, they are found several times faster.
    for name in ("dataBuffer", "disconnecting", "TLS"):
        setattr(connection, name, getattr(connection, name))

    def write_now(data: bytes) -> bool:
        if (
            connection._tempDataLen
            or connection.dataBuffer
            or connection.disconnecting
            or connection.TLS
            or not connection.connected
        ):
            write(data)
            return False
        try:
            written = send(data)
        except OSError:
            written = 0  # would block, or broken: the transport finds out
        if written != len(data):
            write(data[written:])
            return False
        return True

    def write_sequence_now(chunks: list[bytes], size: int) -> bool:
        if (
            len(chunks) > MAX_IOVEC
            or connection._tempDataLen
            or connection.dataBuffer
            or connection.disconnecting
            or connection.TLS
            or not connection.connected
        ):
            write(b"".join(chunks))
            return False
        try:
            written = sendmsg(chunks)
        except OSError:
            written = 0
        if written != size:
            write(b"".join(chunks)[written:])
            return False
        return True

    fd = sock.fileno() if isinstance(sock, socket.socket) else -1
    return Writers(write_now, write_sequence_now, send, fd)


@implementer(IPushProducer)
class SendQueue:
    """
    Output for one connection, coalesced per reactor turn and bounded in bytes.

    Only what it holds while its transport has paused it counts against
    C{limit}: the output of one turn (a burst of a cluster's notifies, say)
    waits for the end of the turn, not for the receiver.
    """

    __slots__ = (
        "_chunks",
        "_clean",
        "_direct",
        "_fd",
        "_owner",
        "_pump",
        "_scheduled",
        "_send",
        "_stats",
        "_write",
        "_write_sequence",
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
        self._write, self._write_sequence, self._send, self._fd = transport_writers(
            transport
        )
        #: The last write went straight to the socket: the next may too,
        #: without looking at the transport (L{push_to_all}).
        self._direct = self._send is not None
        #: C{_direct}, and nothing held.
        self._clean = self._direct
        self._stats = stats
        self._pump = pump
        self._owner = owner
        self._chunks: list[bytes] = []
        self._scheduled = False
        self._written_turn = _NOT_YET
        self.limit = limit
        self.pending = 0
        self.paused = False
        self.closed = False
        transport.registerProducer(self, True)  # type: ignore[attr-defined]

    def push(self, data: bytes) -> None:
        """
        Queue C{data} to be written at the end of this reactor turn (or at
        once while the turn ends, see L{push_to_all}).
        """
        if self._written_turn < self._pump.ending:
            self._write_now(data)
            return
        if self.closed:
            return
        self._clean = False
        self._chunks.append(data)
        self.pending += len(data)
        if self.paused:
            # Held because the receiver is not taking it: bounded by the limit.
            if self.pending > self.limit:
                self._owner.output_overflowed(self.pending)
        elif not self._scheduled:
            self._scheduled = True
            self._pump.write_at_end_of_turn(self)

    def _write_now(self, data: bytes) -> None:
        self._written_turn = self._pump.ending
        chunks = self._chunks
        if chunks:
            chunks.append(data)
            self._write_held(self.pending + len(data))
        else:
            self._stats.bytes_out += len(data)
            self._clean = self._direct = self._write(data)

    def _write_held(self, size: int) -> None:
        chunks = self._chunks
        self._stats.bytes_out += size
        self.pending = 0
        if len(chunks) == 1:
            data = chunks[0]
            chunks.clear()
            self._clean = self._direct = self._write(data)
        else:
            self._clean = self._direct = self._write_sequence(chunks, size)
            chunks.clear()

    def write_unless_paused(self) -> None:
        """
        Hand everything queued to the transport as one write, unless the
        transport paused the queue (then it waits for L{resumeProducing}).
        """
        self._scheduled = False
        if not self.paused:
            self.write_even_if_paused()

    def write_even_if_paused(self) -> None:
        """
        Hand everything queued to the transport now, even while it is paused
        (the transport buffers it): for a connection about to close.
        """
        if self.closed or not self._chunks:
            return
        if not self.paused:
            self._written_turn = self._pump.turn
        self._write_held(self.pending)

    def close(self) -> None:
        """
        Drop whatever is queued and accept nothing more.
        """
        self.closed = True
        self._written_turn = _BLOCKED
        self._chunks.clear()
        self.pending = 0

    def pauseProducing(self) -> None:
        self.paused = True
        self._written_turn = _BLOCKED
        self._owner.output_paused()

    def resumeProducing(self) -> None:
        if self.closed:
            return
        self.paused = False
        self._written_turn = _NOT_YET
        self.write_unless_paused()
        if not self.paused:
            self._owner.output_resumed()

    def stopProducing(self) -> None:
        self.close()


_send_of = attrgetter("_send")
_fd_of = attrgetter("_fd")


def push_to_all(queues: Iterable[SendQueue], data: bytes) -> None:
    """
    Give the same C{data} to each of C{queues}: the one rule of when output
    leaves.

    While the turn ends (the pump is running the application's end of turn),
    a queue that is not paused and wrote nothing yet this turn writes what it
    holds and C{data} at once: nothing it is given later in the turn could
    join them. Any other queue keeps C{data} for its end-of-turn write (or,
    paused, until the transport resumes it); a closed one drops it.

    This runs for every member of every room with news, every turn. The
    common cases, a queue whose last write went straight to the socket and
    that holds nothing (I{clean}) or only the answers of this turn, are only
    collected here; their sockets are then sent to in one call of the C
    helper (or, without it, the clean ones from L{map}), without a Python
    call or a look at the transport per member.
    """
    size = len(data)
    clean: list[SendQueue] = []
    held: list[SendQueue] = []
    collect = clean.append
    # Without the C helper, a queue that holds output writes it with C{data}.
    send_held = _send_each is not None
    for queue in queues:
        ending = queue._pump.ending
        if queue._written_turn >= ending:
            queue.push(data)
        elif queue._clean:
            queue._written_turn = ending
            queue._stats.bytes_out += size
            collect(queue)
        elif queue._direct and send_held:
            queue._written_turn = ending
            held.append(queue)
        else:
            queue._write_now(data)
    if clean:
        _send_directly(clean, data)
    if held:
        _send_after_held(held, data)


def _send_after_held(queues: list[SendQueue], data: bytes) -> None:
    """
    Send what each of C{queues} holds, then C{data}, on its socket, in one
    call of the C helper.
    """
    size = len(data)
    heads = []
    for queue in queues:
        chunks = queue._chunks
        heads.append(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        chunks.clear()
        queue._stats.bytes_out += queue.pending + size
        queue.pending = 0
        queue._clean = True
    _send_each_of(queues, data, heads)


def _send_each_of(
    queues: list[SendQueue], data: bytes, heads: list[bytes] | None
) -> None:
    """
    Send C{data} (after C{heads[i]}, if given) on the socket of each of
    C{queues} with the C helper; what a socket does not take, or all of it
    where the send failed, is written again as C{write_now} writes (in the
    end through the transport).

    A descriptor is the connection's own: Twisted stops a queue (its
    transport's producer) before it closes the socket, and a stopped queue is
    not sent to directly.
    """
    assert _send_each is not None
    fds = list(map(_fd_of, queues))
    start = 0
    while (unsent := _send_each(fds, data, start, heads)) is not None:
        index, written = unsent
        rest = data if heads is None else heads[index] + data
        queue = queues[index]
        queue._clean = queue._direct = queue._write(rest[written:])
        start = index + 1


def _send_directly(queues: list[SendQueue], data: bytes) -> None:
    """
    Send C{data} on the socket of each of C{queues}, with the C helper or
    from L{map}; what a socket does not take, or all of C{data} where the
    C{send} failed, is written again as C{write_now} writes (in the end
    through the transport).
    """
    if _send_each is not None:
        _send_each_of(queues, data, None)
        return
    size = len(data)
    start = 0
    while start < len(queues):
        sent: list[int] = []
        # A send that fails (would block, or broken) ends the map; the list
        # keeps what the sends before it returned.
        with suppress(OSError):
            sent.extend(
                map(call, map(_send_of, islice(queues, start, None)), repeat(data))
            )
        if sent.count(size) != len(sent):
            for queue, written in zip(islice(queues, start, None), sent, strict=False):
                if written != size:
                    queue._clean = queue._direct = queue._write(data[written:])
        start += len(sent)
        if start < len(queues):
            failed = queues[start]
            failed._clean = failed._direct = failed._write(data)
            start += 1
