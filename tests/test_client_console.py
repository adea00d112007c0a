"""
Tests for L{chatsvc.client.console}: the interactive terminal of
C{chatsvc-client}, driven through a fake terminal (prompt_toolkit's pipe
input, and an output that records what is written and whether the input line
was out of the way at the time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from prompt_toolkit.application.current import create_app_session
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.client.console import Console

WAIT = 5.0


class RecordingOutput(DummyOutput):
    """
    A terminal that draws nothing and records each text written on its own,
    with whether the prompt's input line had been erased for it (a line
    written while the input line is on the screen would be glued onto it).
    """

    def __init__(self) -> None:
        self.console: Console | None = None
        self.written: list[tuple[str, bool]] = []

    def write(self, data: str) -> None:
        assert self.console is not None
        app = self.console.session.app
        self.written.append((data, bool(app._running_in_terminal)))


async def until(condition: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


class ConsoleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.lines: list[str] = []
        self.ends = 0
        self.interrupts = 0

    def run_console(
        self,
        scenario: Callable[
            [Console, PipeInput, RecordingOutput], Coroutine[Any, Any, None]
        ],
    ) -> None:
        async def main() -> None:
            with create_pipe_input() as keys:
                output = RecordingOutput()
                with create_app_session(input=keys, output=output):
                    console = Console(
                        self.lines.append,
                        self.ended,
                        self.interrupted,
                        input=keys,
                        output=output,
                    )
                    output.console = console
                    console.start()
                    try:
                        await scenario(console, keys, output)
                    finally:
                        await asyncio.wait_for(
                            asyncio.ensure_future(_fired(console.close())), WAIT
                        )

        asyncio.run(main())

    def ended(self) -> None:
        self.ends += 1

    def interrupted(self) -> None:
        self.interrupts += 1

    def test_lines_typed(self) -> None:
        async def scenario(console: Console, keys: PipeInput, _: Any) -> None:
            keys.send_text("hello\r/enter 2\r안녕하세요\r")
            await until(lambda: len(self.lines) == 3)

        self.run_console(scenario)
        self.assertEqual(self.lines, ["hello", "/enter 2", "안녕하세요"])

    def test_incoming_line_leaves_the_input_line_whole(self) -> None:
        async def scenario(
            console: Console, keys: PipeInput, output: RecordingOutput
        ) -> None:
            buffer = console.session.default_buffer
            keys.send_text("I am in the middle of typ")
            await until(lambda: buffer.text == "I am in the middle of typ")
            console.show("<bob> interrupting you!")
            console.show("<carol> me too")
            await until(lambda: any("<carol>" in text for text, _ in output.written))
            self.assertEqual(buffer.text, "I am in the middle of typ")
            keys.send_text("ing\r")
            await until(lambda: bool(self.lines))

        self.run_console(scenario)
        self.assertEqual(self.lines, ["I am in the middle of typing"])

    def test_shown_lines_are_written_with_the_input_line_out_of_the_way(
        self,
    ) -> None:
        written: list[tuple[str, bool]] = []

        async def scenario(
            console: Console, keys: PipeInput, output: RecordingOutput
        ) -> None:
            keys.send_text("half")
            await until(lambda: console.session.default_buffer.text == "half")
            for n in range(3):
                console.show(f"<bob> {n}")
            await until(lambda: any("<bob> 2" in text for text, _ in output.written))
            written.extend(output.written)

        self.run_console(scenario)
        shown = [(text, erased) for text, erased in written if "<bob>" in text]
        # One write for the three lines, in order, with the input line erased.
        self.assertEqual(shown, [("<bob> 0\n<bob> 1\n<bob> 2\n", True)])

    def test_a_line_sent_leaves_the_screen(self) -> None:
        # What was typed is erased when sent: it comes back as the server's
        # notify, so it shows once.
        with create_pipe_input() as keys:
            console = Console(
                self.lines.append,
                self.ended,
                self.interrupted,
                input=keys,
                output=DummyOutput(),
            )
            self.assertTrue(console.session.app.erase_when_done)

    def test_ctrl_d_ends_and_ctrl_c_interrupts(self) -> None:
        async def end(console: Console, keys: PipeInput, _: Any) -> None:
            keys.send_text("\x04")
            await until(lambda: self.ends == 1)

        async def interrupt(console: Console, keys: PipeInput, _: Any) -> None:
            keys.send_text("\x03")
            await until(lambda: self.interrupts == 1)

        self.run_console(end)
        self.run_console(interrupt)
        self.assertEqual((self.ends, self.interrupts, self.lines), (1, 1, []))


async def _fired(deferred: Any) -> None:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    deferred.addBoth(lambda _: done.done() or done.set_result(None))
    await done
