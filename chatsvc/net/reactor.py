# -*- test-case-name: tests.test_reactor -*-
"""
Twisted's epoll reactor without its per-event logging context:
C{twistd --reactor=chatsvc-epoll -n chatsvc}.

Twisted's epoll reactor handles every ready socket inside
C{twisted.python.log.callWithLogger}, which asks the connection for its log
prefix and runs the read in a new context of the legacy log, so that what
the legacy log records meanwhile names the connection as its "system". That
costs more instructions than the rest of reading a socket and handing the
bytes to a session (bench/README.md, "Where chatsvc's time goes"). chatsvc
logs through C{twisted.logger} with its own fields (peer, session), so it
drops that context: L{EPollReactor} is Twisted's, with the handling of each
event called directly. What Twisted itself logs from a failed read through
the legacy log is still logged, with the default system C{-}.

Only the readiness loop changes: sockets, transports, timers and threads
are Twisted's. The IOCP reactor and the other reactors are not touched; on
them chatsvc runs as it does without this module.
"""

from __future__ import annotations

from twisted.internet import epollreactor
from twisted.internet.main import installReactor


class EPollReactor(epollreactor.EPollReactor):
    """
    Twisted's epoll reactor, handling each ready socket without a legacy
    logging context.
    """

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
            if selectable is not None:
                handle(selectable, fd, event)

    doIteration = doPoll


def install() -> None:
    """
    Install L{EPollReactor} as Twisted's reactor.
    """
    installReactor(EPollReactor())
