# -*- test-case-name: tests.test_client_cli -*-
"""
One C{chatsvc-client} session: log in, then carry commands from the screen
to the server and events from the server to the screen, and end with an exit
code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Final, TextIO

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from chatsvc.client.commands import (
    HELP_TEXT,
    Enter,
    Help,
    Invalid,
    Leave,
    Quit,
    Say,
    parse_command,
)
from chatsvc.client.connection import ServerConnection
from chatsvc.client.render import ChatView, failure_text
from chatsvc.client.terminal import Screen
from chatsvc.protocol import (
    Event,
    PacketId,
    Response,
    chat_request,
    enter_room_request,
    leave_room_request,
    login_request,
)

PROGRAM: Final = "chatsvc-client"
DEFAULT_TIMEOUT: Final = 10.0
#: How long C{/quit} waits for the answers to requests already sent.
QUIT_GRACE: Final = 2.0

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_UNREACHABLE: Final = 2
EXIT_INTERRUPTED: Final = 130

#: Opens the screen once logged in, given what to call with each line typed,
#: at the end of the input and on an interrupt.
OpenScreen = Callable[
    [Callable[[str], None], Callable[[], None], Callable[[], object]], Screen
]


def _cancel_after(clock: IReactorTime, seconds: float, waiting: Deferred[None]) -> None:
    """
    Cancel C{waiting} unless it fires within C{seconds}.
    """
    call = clock.callLater(seconds, waiting.cancel)

    def fired(result: object) -> object:
        if call.active():
            call.cancel()
        return result

    waiting.addBoth(fired)


class ChatClient:
    """
    One session: logs in, then moves commands from the terminal to the server
    and events from the server to the terminal.

    Before the login answer nothing is read from standard input (typed lines
    wait in its buffer); once the login succeeds C{open_screen} is called with
    what to do with a line, the end of the input and an interrupt (Ctrl-C),
    and returns the L{Screen}. L{done} fires with the exit code.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        user_id: str,
        password: str,
        open_screen: OpenScreen,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        quit_grace: float = QUIT_GRACE,
        errors: TextIO | None = None,
        interactive: bool = False,
    ) -> None:
        self.reactor = reactor
        self.user_id = user_id
        self.password = password
        self.view = ChatView(user_id.encode("utf-8"))
        self.connection = ServerConnection(self.event_received)
        self.connection.closed.addCallback(self._connection_closed)
        self.screen: Screen | None = None
        self.done: Deferred[int] = Deferred()
        self.quitting = False
        self._open_screen = open_screen
        self._timeout = timeout
        self._quit_grace = quit_grace
        self._errors = errors
        self._interactive = interactive
        self._timer: IDelayedCall | None = None
        self._finishing = False

    # -- the connection --

    def connected(self) -> None:
        """
        The TCP connection is up: log in.
        """
        self.connection.send(login_request(self.user_id, self.password))
        self._timer = self.reactor.callLater(self._timeout, self._login_timed_out)

    def event_received(self, event: Event) -> None:
        """
        One event from the server.
        """
        if self.screen is None:
            self._login_answered(event)
            return
        for line in self.view.receive(event):
            self.screen.show(line)
        if self.quitting and self.view.idle:
            self.connection.close()

    def _login_answered(self, event: Event) -> None:
        if self._finishing:
            return
        self._cancel_timer()
        if not (
            isinstance(event, Response) and event.packet_id == PacketId.LOGIN_RESPONSE
        ):
            self._fail(f"the server sent {event!r} before answering the login")
            return
        if not event.ok:
            self._fail(failure_text(event))
            return
        self.screen = self._open_screen(self.line_received, self.quit, self.interrupt)
        self.screen.show(f"logged in as {self.user_id}")
        if self._interactive:
            self.screen.show("type /enter N to enter room N, /help for the commands")

    def _login_timed_out(self) -> None:
        self._timer = None
        self._fail(f"no answer to the login within {self._timeout:g} seconds")

    def _connection_closed(self, _: None) -> None:
        self._cancel_timer()
        if self._finishing:
            return
        if self.connection.error is not None:
            self._fail(
                f"protocol error from the server: {self.connection.error.reason}"
            )
        elif self.quitting:
            self._finish(EXIT_OK)
        else:
            self._fail("the server closed the connection")

    # -- the screen --

    def line_received(self, line: str) -> None:
        """
        One line typed (or piped) on standard input.
        """
        if self.quitting or self.screen is None:
            return
        command = parse_command(line)
        show = self.screen.show
        match command:
            case None:
                pass
            case Say(message):
                self.connection.send(chat_request(message))
                self.view.sent_chat()
            case Enter(room):
                self.connection.send(enter_room_request(room))
                self.view.sent_enter(room)
            case Leave():
                self.connection.send(leave_room_request())
                self.view.sent_leave()
            case Quit():
                self.quit()
            case Help():
                for help_line in HELP_TEXT.splitlines():
                    show(help_line)
            case Invalid(reason):
                show(f"! {reason}")

    def quit(self) -> None:
        """
        End the session: stop reading input, wait (a little) for the answers
        to what was already sent, then close the connection.
        """
        if self.quitting or self._finishing:
            return
        self.quitting = True
        if self.screen is not None:
            self.screen.pause_input()
        if self.view.idle:
            self.connection.close()
        else:
            self._timer = self.reactor.callLater(
                self._quit_grace, self.connection.close
            )

    # -- the end --

    def interrupt(self) -> Deferred[None] | None:
        """
        The program is being stopped from outside: end the session at once.
        The L{Deferred} fires once the output is flushed (L{None} if the
        session was already ending).
        """
        if self._finishing:
            return None
        ended: Deferred[None] = Deferred()

        def flushed(code: int) -> int:
            ended.callback(None)
            return code

        self.done.addCallback(flushed)
        self._finish(EXIT_INTERRUPTED)
        return ended

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _fail(self, message: str) -> None:
        self._finish(EXIT_FAILED, message)

    def _finish(self, code: int, message: str | None = None) -> None:
        if self._finishing:
            return
        self._finishing = True
        self._cancel_timer()
        self.connection.close()
        # Flush and close standard output first: it is non-blocking while open,
        # and an error line must come after everything already shown.
        closing = succeed(None) if self.screen is None else self.screen.close()
        _cancel_after(self.reactor, self._quit_grace, closing)

        def report(_: object) -> int:
            if message is not None:
                print(f"{PROGRAM}: {message}", file=self._errors or sys.stderr)
            return code

        closing.addBoth(report).chainDeferred(self.done)


__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "ChatClient",
    "OpenScreen",
]
