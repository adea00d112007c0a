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
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class Batch(Protocol):
    """
    Something with packets to process a bounded batch of at a time.
    """

    def process_batch(self) -> bool:
        """
        Process at most one batch; return whether more work is left.
        """


class Flushable(Protocol):
    """
    Something holding output to write at the end of the turn.
    """

    def flush(self) -> None:
        """
        Write what is pending.
        """


class Pump:
    """
    Schedules input processing and output flushing once per reactor turn.

    @ivar turn: counts the turns run.
    @ivar flushing: whether the end-of-turn hooks are running: nothing the
        application queues after that point would wait for anything else.
    """

    def __init__(self, reactor: IReactorTime) -> None:
        self._reactor = reactor
        self._ready: deque[Batch] = deque()
        self._dirty: list[Flushable] = []
        self._hooks: list[Callable[[], None]] = []
        self._call: IDelayedCall | None = None
        self.turn = 0
        self.flushing = False

    def add_turn_hook(self, hook: Callable[[], None]) -> None:
        """
        Run C{hook} at the end of every turn, before output is flushed.
        """
        self._hooks.append(hook)

    def ready(self, work: Batch) -> None:
        """
        Schedule C{work} for a batch in this turn; its caller makes sure it is
        not scheduled twice.
        """
        self._ready.append(work)
        if self._call is None:
            self._call = self._reactor.callLater(0, self._run)

    def dirty(self, output: Flushable) -> None:
        """
        Schedule C{output} to be flushed at the end of this turn; its caller
        makes sure it is not scheduled twice.
        """
        self._dirty.append(output)
        if self._call is None:
            self._call = self._reactor.callLater(0, self._run)

    def run_now(self) -> None:
        """
        Run the pending turn at once (for tests and for shutdown).
        """
        if self._call is not None:
            self._call.cancel()
            self._run()

    def _run(self) -> None:
        self._call = None
        self.turn += 1
        ready = self._ready
        for _ in range(len(ready)):
            work = ready.popleft()
            if work.process_batch():
                ready.append(work)
        self.flushing = True
        try:
            for hook in self._hooks:
                hook()
        finally:
            self.flushing = False
        dirty = self._dirty
        self._dirty = []
        for output in dirty:
            output.flush()
        if (ready or self._dirty) and self._call is None:
            self._call = self._reactor.callLater(0, self._run)
