# -*- test-case-name: tests.test_client_console -*-
"""
The interactive terminal of C{chatsvc-client}: a line editor (prompt_toolkit)
whose input line stays whole at the bottom while messages arrive above it.

The line being typed is prompt_toolkit's, not the terminal's: nothing the
server sends is ever written into it, and a line sent is erased from the
screen (it comes back as the server's notify, so it shows once). It runs on
the asyncio event loop under Twisted's asyncio reactor (see
L{chatsvc.client.cli}).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prompt_toolkit import PromptSession
from prompt_toolkit.application.current import set_app
from prompt_toolkit.application.run_in_terminal import in_terminal
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output
from twisted.internet.defer import Deferred

PROMPT = "> "


class Console:
    """
    The interactive terminal: lines typed go to C{on_line}, Ctrl-D on an
    empty line to C{on_end}, Ctrl-C to C{on_interrupt}; L{show} prints a
    line above the one being typed.

    @param input: where keys come from (default: the terminal).
    @param output: where the screen is drawn (default: the terminal).
    """

    def __init__(
        self,
        on_line: Callable[[str], None],
        on_end: Callable[[], None],
        on_interrupt: Callable[[], object],
        *,
        input: Input | None = None,
        output: Output | None = None,
    ) -> None:
        self.on_line = on_line
        self.on_end = on_end
        self.on_interrupt = on_interrupt
        self.session: PromptSession[str] = PromptSession(
            PROMPT, input=input, output=output, erase_when_done=True
        )
        self._pending: list[str] = []
        self._showing: asyncio.Task[None] | None = None
        self._reading: asyncio.Task[None] | None = None

    def start(self) -> None:
        """
        Start reading lines (on the running asyncio loop).
        """
        self._reading = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            try:
                line = await self.session.prompt_async()
            except EOFError:
                self.on_end()
                return
            except KeyboardInterrupt:
                self.on_interrupt()
                return
            self.on_line(line)

    def show(self, line: str) -> None:
        """
        Print one line above the input line (lines shown in the same turn of
        the loop are printed together, with one redraw of the input line).
        """
        self._pending.append(line)
        self._schedule()

    def _schedule(self) -> None:
        if self._showing is None:
            # The prompt's application is not in this callback's context (the
            # connection's reader was registered before it ran): name it.
            with set_app(self.session.app):
                self._showing = asyncio.ensure_future(self._show_pending())

    async def _show_pending(self) -> None:
        try:
            async with in_terminal():
                lines, self._pending = self._pending, []
                output = self.session.output
                # Output.write neutralises escape sequences.
                output.write("".join(line + "\n" for line in lines))
                output.flush()
        finally:
            self._showing = None
            if self._pending:
                self._schedule()

    def pause_input(self) -> None:
        """
        Stop reading: the input line goes away.
        """
        if self._reading is not None:
            self._reading.cancel()

    def close(self) -> Deferred[None]:
        """
        Stop reading; fires once every line shown has been written.
        """
        self.pause_input()
        return Deferred.fromFuture(asyncio.ensure_future(self._flushed()))

    async def _flushed(self) -> None:
        while self._showing is not None:
            await asyncio.wait([self._showing])
