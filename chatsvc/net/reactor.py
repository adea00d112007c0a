# -*- test-case-name: tests.test_reactor -*-
"""
Twisted's epoll reactor with a shorter path from a readable socket to its
protocol: C{twistd --reactor=chatsvc-epoll -n chatsvc}.

Twisted's epoll reactor handles every ready socket inside
C{twisted.python.log.callWithLogger}, which asks the connection for its log
prefix and runs the read in a new context of the legacy log, so that what
the legacy log records meanwhile names the connection as its "system". That
costs more instructions than the rest of reading a socket and handing the
bytes to a session (bench/README.md, "Where chatsvc's time goes"). chatsvc
logs through C{twisted.logger} with its own fields (peer, session), so it
drops that context. What Twisted itself logs from a failed read through the
legacy log is still logged, with the default system C{-}.

The most frequent event, a TCP connection with bytes to read and nothing
else to report, is handled in the loop itself: one C{recv} of the
connection's C{bufferSize}, and the bytes handed to its protocol's
C{dataReceived}, as C{Connection.doRead} would after Twisted's checks for
disconnection and writability (which such an event does not need). The end
of the stream, a failed read and an exception from the protocol close the
connection as Twisted's reactor does. Every other event, and connections of
other classes (listening ports, subclasses that may read differently), take
Twisted's own path.

It also runs calls given to C{callAfterPoll} once a poll's events are
handled: chatsvc's pump runs its turn that way instead of as a timed call
of no delay.

Only the readiness loop changes: sockets, transports, timers and threads
are Twisted's. The IOCP reactor and the other reactors are not touched; on
them chatsvc runs as it does without this module.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from select import EPOLLIN

from twisted.internet import epollreactor, tcp
from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST, installReactor
from twisted.python import log

#: Connections whose reads the loop makes itself: Twisted's TCP connections,
#: not subclasses (which may read differently).
_DIRECT_READ = frozenset({tcp.Server, tcp.Client})


class EPollReactor(epollreactor.EPollReactor):
    """
    Twisted's epoll reactor, handling each ready socket without a legacy
    logging context, and reading TCP connections in the loop.
    """

    def __init__(self) -> None:
        super().__init__()
        self._after_poll: list[Callable[[], object]] = []

    def callAfterPoll(self, f: Callable[[], object]) -> None:
        """
        Call C{f} once the events of this poll are handled (or of the next
        one, which then does not wait): what C{callLater(0, f)} does, without
        a timed call to make, sort and log around. An exception from C{f} is
        logged.
        """
        self._after_poll.append(f)

    def timeout(self) -> float | None:
        """
        How long the next poll may wait: not at all while calls wait for it.
        """
        return 0 if self._after_poll else super().timeout()

    def doPoll(self, timeout: float | None) -> None:
        """
        Wait for events, at most C{timeout} seconds (C{None}: no limit), and
        handle each as Twisted's epoll reactor does.
        """
        try:
            events = self._poller.poll(
                -1 if timeout is None else timeout, len(self._selectables)
            )
        except InterruptedError:
            return
        selectable_of = self._selectables.get
        handle = self._doReadOrWrite
        for fd, event in events:
            selectable = selectable_of(fd)
            if selectable is None:
                continue
            if event != EPOLLIN or type(selectable) not in _DIRECT_READ:
                handle(selectable, fd, event)
                continue
            try:
                data = selectable.socket.recv(selectable.bufferSize)
            except BlockingIOError:
                continue
            except OSError:
                self._disconnectSelectable(selectable, CONNECTION_LOST, True)
                continue
            if not data:
                self._disconnectSelectable(selectable, CONNECTION_DONE, True)
                continue
            try:
                selectable.protocol.dataReceived(data)
            except BaseException:
                why = sys.exc_info()[1]
                log.err()
                self._disconnectSelectable(selectable, why, True)
        if self._after_poll:
            calls, self._after_poll = self._after_poll, []
            for call in calls:
                try:
                    call()
                except BaseException:
                    log.err()

    doIteration = doPoll


def install() -> None:
    """
    Install L{EPollReactor} as Twisted's reactor.
    """
    installReactor(EPollReactor())
