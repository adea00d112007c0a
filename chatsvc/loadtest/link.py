# -*- test-case-name: tests.test_loadtest -*-
"""
One bot's connection on asyncio: bytes from the transport to the L{Bot} and
back, and the waits a scenario makes on it (an answer, the end of the drain).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from chatsvc.loadtest.bot import Bot
from chatsvc.loadtest.counters import Counters
from chatsvc.loadtest.scenarios import BotFailedError


class Phase:
    """
    Where the run of one load process is, as its connections need to know:
    the request timeout, whether the measured phase is over (C{stopping}: waits
    end at C{drain_deadline}) and whether the connections are being closed on
    purpose (C{finishing}: a closed connection is not an error).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.stopping = False
        self.finishing = False
        self.drain_deadline = float("inf")

    def deadline(self) -> float:
        """
        Return when a wait that starts now ends: after the request timeout,
        or at the end of the drain period once the run is stopping.
        """
        if self.stopping:
            return self.drain_deadline
        return self.loop.time() + self.timeout


class Link(asyncio.Protocol):
    """
    One bot's connection: moves bytes between the transport and the L{Bot}.
    """

    def __init__(
        self,
        bot: Bot,
        phase: Phase,
        counters: Counters,
        violated: Callable[[Bot], None],
    ) -> None:
        self.bot = bot
        self.phase = phase
        self.counters = counters
        self.violated = violated
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = phase.loop.create_future()
        self._paused = False
        self._closing = False
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.closed.done()

    @property
    def paused(self) -> bool:
        return self._paused

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.bot.connection_made()
        self.counters.connected += 1

    def data_received(self, data: bytes) -> None:
        bot = self.bot
        bot.receive(data, time.monotonic_ns())
        out = bot.data_to_send()
        if out:
            self.transport.write(out)  # type: ignore[union-attr]
        if bot.violation is not None:
            self.violated(bot)
            self._closing = True
            self.transport.abort()  # type: ignore[union-attr]
        if self._waiters:
            self._check()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        bot = self.bot
        state = bot.state
        self.counters.connected -= 1
        bot.connection_lost()
        if not self._closing and not self.phase.finishing:
            reason = f": {exc}" if exc else ""
            self.counters.error(
                f"connection closed by the server while {state.value}{reason}"
            )
        if not self.closed.done():
            self.closed.set_result(None)
        self._check()

    def poke(self) -> None:
        """
        Check the waiting conditions again (something other than data changed).
        """
        if self._waiters:
            self._check()

    def _check(self) -> None:
        waiters = self._waiters
        keep = []
        for condition, future in waiters:
            if future.done():
                continue
            if condition():
                future.set_result(None)
            elif self.closed.done():
                future.set_exception(BotFailedError())
            else:
                keep.append((condition, future))
        self._waiters = keep

    def send(self, data: bytes) -> None:
        if self.open:
            self.transport.write(data)  # type: ignore[union-attr]

    async def _until(self, condition: Callable[[], bool], deadline: float) -> bool:
        if condition():
            return True
        if not self.open:
            raise BotFailedError
        loop = self.phase.loop
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append((condition, future))
        try:
            await asyncio.wait_for(future, max(deadline - loop.time(), 0))
        except TimeoutError:
            return False
        return True

    async def wait(self, condition: Callable[[], bool], what: str) -> None:
        phase = self.phase
        if not await self._until(condition, phase.loop.time() + phase.timeout):
            if self.bot.violation is None:
                self.counters.error(f"no answer within {phase.timeout:g} s: {what}")
            raise BotFailedError

    async def drain(self, condition: Callable[[], bool]) -> bool:
        try:
            return await self._until(condition, self.phase.deadline())
        except BotFailedError:
            return False

    async def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), 5)
