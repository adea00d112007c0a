# -*- test-case-name: tests.test_session -*-
"""
The reactor turn: where queued input is processed and queued output leaves.

The tutorial hands packets from its I/O threads to a logic thread and sends from
a send thread. On Twisted both run in the reactor thread, so the same split is
made in time instead: C{dataReceived} only buffers bytes and marks the session
ready; once per reactor turn a L{Pump} gives every ready session one bounded
batch of packet processing (round robin, so a client that sends 10,000 packets
at once delays the others by one batch at most), lets the application finish
the turn, then hands each session's queued output to its transport as one
write.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class BatchWorker(Protocol):
    """
    Something that processes its input a bounded batch at a time (a session).
    """

    def process_batch(self) -> bool:
        """
        Process at most one batch; return whether more work is left.
        """


class HeldOutput(Protocol):
    """
    Something holding output to write at the end of the turn (a send queue).
    """

    def write_unless_paused(self) -> None:
        """
        Write what is held, unless the receiver asked for a pause.
        """


class Pump:
    """
    Schedules input processing and output writing once per reactor turn.

    @ivar turn: counts the turns run.
    @ivar ending: the number of the turn whose end-of-turn hooks are running,
        or -1 between them: nothing the application queues while a turn ends
        would wait for anything else.

    What is queued while a turn runs is looked at when it ends: a turn
    follows only if something is left for it, so a turn that answers a
    request costs one pass of the reactor, not two. A turn runs once the
    reactor handled the events of its poll: with C{callAfterPoll} where the
    reactor has it (L{chatsvc.net.reactor.EPollReactor}), else as a timed
    call of no delay.
    """

    def __init__(self, reactor: IReactorTime) -> None:
        self._reactor = reactor
        self._ready: deque[BatchWorker] = deque()
        self._held: list[HeldOutput] = []
        self._hooks: list[Callable[[], None]] = []
        after_poll = getattr(reactor, "callAfterPoll", None)
        self._call_soon: Callable[[Callable[[], None]], object] = after_poll or partial(
            reactor.callLater, 0
        )
        self._scheduled = False
        self._pending: object = None
        self._running = False
        self._again = False
        self.turn = 0
        self.ending = -1

    def add_turn_hook(self, hook: Callable[[], None]) -> None:
        """
        Run C{hook} at the end of every turn, before held output is written
        (L{SessionFactory} adds its application's C{end_of_turn}).
        """
        self._hooks.append(hook)

    def process_in_turn(self, work: BatchWorker) -> None:
        """
        Give C{work} a batch in this turn, and more in later turns for as long
        as it says it has more; its caller makes sure it is not scheduled twice.
        """
        self._ready.append(work)
        self._schedule()

    def write_at_end_of_turn(self, output: HeldOutput) -> None:
        """
        Have C{output} written at the end of this turn; its caller makes sure
        it is not scheduled twice.
        """
        self._held.append(output)
        self._schedule()

    def run_soon(self) -> None:
        """
        Make sure a turn runs soon: its end runs the turn hooks, which send
        what the application held back outside a turn (a disconnect's room
        notifies, what a cluster's Redis delivered).
        """
        if self._running:
            self._again = True
        else:
            self._schedule()

    def run_now(self) -> None:
        """
        Run the pending turn at once (for tests).
        """
        if self._scheduled:
            if IDelayedCall.providedBy(self._pending) and self._pending.active():
                self._pending.cancel()
            self._run()

    def _schedule(self) -> None:
        if not (self._scheduled or self._running):
            self._scheduled = True
            self._pending = self._call_soon(self._scheduled_run)

    def _scheduled_run(self) -> None:
        if self._scheduled:  # unless run_now ran it
            self._run()

    def _run(self) -> None:
        self._scheduled = False
        self._running = True
        try:
            self.turn += 1
            ready = self._ready
            for _ in range(len(ready)):
                work = ready.popleft()
                if work.process_batch():
                    ready.append(work)
            self.ending = self.turn
            try:
                for hook in self._hooks:
                    hook()
            finally:
                self.ending = -1
            held = self._held
            self._held = []
            for output in held:
                output.write_unless_paused()
        finally:
            self._running = False
            again, self._again = self._again, False
            if again or self._ready or self._held:
                self._schedule()
