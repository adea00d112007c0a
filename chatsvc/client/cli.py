# -*- test-case-name: tests.test_client_cli -*-
"""
C{chatsvc-client}: a terminal chat client for chatsvc and the edu_cpp_IOCP
tutorial's servers.

It logs in, then reads commands and chat lines from standard input and prints
every server event as a line of text. The pieces:

  - L{parse_command}: one input line to a command (pure);
  - L{chatsvc.client.render}: events to lines (pure);
  - L{ServerConnection}: the TCP side, bytes to events;
  - L{Terminal}: the standard input/output side, bytes to lines;
  - L{ChatClient}: the session that ties them together;
  - L{main}: the command line, run under L{twisted.internet.task.react}.

Exit codes: 0 after C{/quit} or the end of the input; 1 when the login fails
or the server closes the connection; 2 for bad arguments or an unreachable
server; 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, NoReturn, Protocol, TextIO, cast

from twisted.internet import task
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.protocol import connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatsvc.client.render import ChatView, failure_text
from chatsvc.protocol import (
    MAX_CHAT_MSG_SIZE,
    MAX_USER_ID_LEN,
    MAX_USER_PW_LEN,
    Event,
    PacketDecoder,
    PacketId,
    ProtocolError,
    Response,
    chat_request,
    enter_room_request,
    leave_room_request,
    login_request,
    parse_event,
)

PROGRAM: Final = "chatsvc-client"
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 11021
DEFAULT_TIMEOUT: Final = 10.0
#: How long C{/quit} waits for the answers to requests already sent.
QUIT_GRACE: Final = 2.0
PASSWORD_ENV: Final = "CHATSVC_PASSWORD"
_NEWLINE: Final = os.linesep.encode()

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_UNREACHABLE: Final = 2
EXIT_INTERRUPTED: Final = 130

_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1

HELP_TEXT: Final = """\
commands:
  /enter N   enter room N
  /leave     leave the room you are in
  /quit      quit (so does the end of the input, Ctrl-D)
  /help      show this help
  //text     send a message that starts with "/"
any other line is sent to the room as a chat message (at most 256 bytes of UTF-8)"""


# --- commands: one input line to what it asks for (pure) -----------------------


@dataclass(frozen=True, slots=True)
class Enter:
    """
    C{/enter N}: enter room N.
    """

    room: int


@dataclass(frozen=True, slots=True)
class Leave:
    """
    C{/leave}: leave the room.
    """


@dataclass(frozen=True, slots=True)
class Quit:
    """
    C{/quit}: end the session.
    """


@dataclass(frozen=True, slots=True)
class Help:
    """
    C{/help}: show the commands.
    """


@dataclass(frozen=True, slots=True)
class Say:
    """
    A chat message, already encoded as UTF-8.
    """

    message: bytes


@dataclass(frozen=True, slots=True)
class Invalid:
    """
    A line that cannot be sent; C{reason} says why.
    """

    reason: str


Command = Enter | Leave | Quit | Help | Say | Invalid

_NO_ARGUMENTS: Final[dict[str, Command]] = {
    "leave": Leave(),
    "quit": Quit(),
    "exit": Quit(),
    "help": Help(),
}


def parse_command(line: str) -> Command | None:
    """
    Return the command one input line asks for, or L{None} for a blank line.

    A line that starts with C{/} is a command; C{//} escapes a message that
    starts with C{/}; anything else is a chat message.
    """
    line = line.rstrip("\r\n")
    if not line.strip():
        return None
    if line.startswith("/") and not line.startswith("//"):
        word, *arguments = line[1:].split()
        word = word.lower()
        if word in ("enter", "join"):
            return _enter(arguments)
        if word in _NO_ARGUMENTS:
            if arguments:
                return Invalid(f"/{word} takes no arguments")
            return _NO_ARGUMENTS[word]
        return Invalid(f"unknown command /{word}; /help lists the commands")
    if line.startswith("//"):
        line = line[1:]
    message = line.encode("utf-8", "replace")
    if len(message) > MAX_CHAT_MSG_SIZE:
        return Invalid(
            f"message too long: {len(message)} bytes of UTF-8, the limit is"
            f" {MAX_CHAT_MSG_SIZE}; nothing sent"
        )
    if b"\0" in message:
        return Invalid("message contains a NUL character; nothing sent")
    return Say(message)


def _enter(arguments: list[str]) -> Command:
    usage = Invalid("usage: /enter ROOM_NUMBER")
    if len(arguments) != 1:
        return usage
    try:
        room = int(arguments[0])
    except ValueError:
        return usage
    if not _INT32_MIN <= room <= _INT32_MAX:
        return Invalid(f"room number {room} does not fit the protocol's int32")
    return Enter(room)


# --- the Twisted shell -------------------------------------------------------

# What this module uses of Twisted's reactor and transports, as structural
# types: each names just the methods called, and a test fake needs no more.


class Clock(Protocol):
    """
    The part of C{IReactorTime} the client uses.
    """

    def callLater(
        self, delay: float, callable: Callable[..., object], /, *args: object
    ) -> DelayedCall: ...


class DelayedCall(Protocol):
    """
    The part of C{IDelayedCall} the client uses.
    """

    def active(self) -> bool: ...

    def cancel(self) -> None: ...


class Reactor(Clock, Protocol):
    """
    The part of the reactor L{run} uses besides L{Clock} (the endpoint takes
    the reactor as it is).
    """

    def addSystemEventTrigger(
        self, phase: str, eventType: str, callable: Callable[..., object], /
    ) -> object: ...


class _Transport(Protocol):
    def write(self, data: bytes) -> None: ...

    def loseConnection(self) -> None: ...


class _TCPTransport(_Transport, Protocol):
    def abortConnection(self) -> None: ...


class _StdioTransport(_Transport, Protocol):
    def pauseProducing(self) -> None: ...


def _cancel_after(clock: Clock, seconds: float, waiting: Deferred[None]) -> None:
    """
    Cancel C{waiting} unless it fires within C{seconds}.
    """
    call = clock.callLater(seconds, waiting.cancel)

    def fired(result: object) -> object:
        if call.active():
            call.cancel()
        return result

    waiting.addBoth(fired)


class ServerConnection(TwistedProtocol):
    """
    The connection to the server: feeds received bytes to a L{PacketDecoder}
    and hands each decoded event to C{on_event}.

    @ivar error: the protocol error that made this side abort the connection.
    @ivar closed: fires with L{None} once the connection is closed.
    """

    def __init__(self, on_event: Callable[[Event], None]) -> None:
        self.on_event = on_event
        self.decoder = PacketDecoder()
        self.error: ProtocolError | None = None
        self.closed: Deferred[None] = Deferred()

    def send(self, data: bytes) -> None:
        """
        Send encoded packets, unless the connection is going away.
        """
        transport = self._transport
        if transport is not None and self.error is None:
            transport.write(data)

    def close(self) -> None:
        """
        Close the connection once what was sent has been written.
        """
        transport = self._transport
        if transport is not None:
            transport.loseConnection()

    @property
    def _transport(self) -> _TCPTransport | None:
        return cast("_TCPTransport | None", self.transport)

    def dataReceived(self, data: bytes) -> None:
        if self.error is not None:
            return
        self.decoder.feed(data)
        try:
            while (packet := self.decoder.next_packet()) is not None:
                self.on_event(parse_event(packet))
        except ProtocolError as e:
            self.error = e
            transport = self._transport
            if transport is not None:
                transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)


@implementer(IHalfCloseableProtocol)
class Terminal(LineReceiver):
    """
    Standard input and output: input lines go to C{on_line}, the end of the
    input (or of the output) to C{on_end}; L{show} prints a line.
    """

    delimiter = b"\n"
    MAX_LENGTH = 64 * 1024

    def __init__(
        self,
        on_line: Callable[[str], None],
        on_end: Callable[[], None],
        encoding: str = "utf-8",
    ) -> None:
        self.on_line = on_line
        self.on_end = on_end
        self.encoding = encoding
        self._output_lost = False
        self._closed = False
        self._close_waiters: list[Deferred[None]] = []

    def show(self, line: str) -> None:
        """
        Print one line.
        """
        transport = self._transport
        if transport is not None and not self._output_lost:
            transport.write(line.encode(self.encoding, "replace") + _NEWLINE)

    def pause_input(self) -> None:
        """
        Stop reading standard input.
        """
        transport = self._transport
        if transport is not None:
            transport.pauseProducing()

    def close(self) -> Deferred[None]:
        """
        Stop reading, flush and close the output; the L{Deferred} fires once
        everything shown has been written.
        """
        waiter: Deferred[None] = Deferred()
        transport = self._transport
        if self._closed or self._output_lost or transport is None:
            waiter.callback(None)
        else:
            self._close_waiters.append(waiter)
            transport.loseConnection()
        return waiter

    @property
    def _transport(self) -> _StdioTransport | None:
        return cast("_StdioTransport | None", self.transport)

    def lineReceived(self, line: bytes) -> None:
        self.on_line(line.decode(self.encoding, "replace"))

    def lineLengthExceeded(self, line: bytes) -> None:
        self.show(f"! input line longer than {self.MAX_LENGTH} bytes; ignored")

    def readConnectionLost(self) -> None:
        self.on_end()

    def writeConnectionLost(self) -> None:
        # Nobody reads what we print any more: that ends the session too.
        self._output_lost = True
        self.on_end()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed = True
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)


class ChatClient:
    """
    One session: logs in, then moves commands from the terminal to the server
    and events from the server to the terminal.

    Before the login answer nothing is read from standard input (typed lines
    wait in its buffer); C{start_terminal} is called with the L{Terminal} once
    the login succeeds. L{done} fires with the exit code.
    """

    def __init__(
        self,
        reactor: Clock,
        user_id: str,
        password: str,
        start_terminal: Callable[[Terminal], object],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        quit_grace: float = QUIT_GRACE,
        errors: TextIO | None = None,
        interactive: bool = False,
        encoding: str = "utf-8",
    ) -> None:
        self.reactor = reactor
        self.user_id = user_id
        self.password = password
        self.view = ChatView(user_id.encode("utf-8"))
        self.connection = ServerConnection(self.event_received)
        self.connection.closed.addCallback(self._connection_closed)
        self.terminal: Terminal | None = None
        self.done: Deferred[int] = Deferred()
        self.quitting = False
        self._start_terminal = start_terminal
        self._timeout = timeout
        self._quit_grace = quit_grace
        self._errors = errors
        self._interactive = interactive
        self._encoding = encoding
        self._timer: DelayedCall | None = None
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
        if self.terminal is None:
            self._login_answered(event)
            return
        for line in self.view.receive(event):
            self.terminal.show(line)
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
        self.terminal = Terminal(self.line_received, self.quit, self._encoding)
        self._start_terminal(self.terminal)
        self.terminal.show(f"logged in as {self.user_id}")
        if self._interactive:
            self.terminal.show("type /enter N to enter room N, /help for the commands")

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

    # -- the terminal --

    def line_received(self, line: str) -> None:
        """
        One line typed (or piped) on standard input.
        """
        if self.quitting or self.terminal is None:
            return
        command = parse_command(line)
        show = self.terminal.show
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
        if self.terminal is not None:
            self.terminal.pause_input()
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
        closing = succeed(None) if self.terminal is None else self.terminal.close()
        _cancel_after(self.reactor, self._quit_grace, closing)

        def report(_: object) -> int:
            if message is not None:
                print(f"{PROGRAM}: {message}", file=self._errors or sys.stderr)
            return code

        closing.addBoth(report).chainDeferred(self.done)


# --- the command line --------------------------------------------------------


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is not in 1..65535")
    return port


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    """
    The C{chatsvc-client} argument parser.
    """
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description=(
            "Chat on a chatsvc server (or any server speaking the edu_cpp_IOCP"
            " tutorial's protocol) from a terminal. After logging in, each line"
            " read from standard input is a command or a chat message:"
            " /enter N, /leave, /quit and /help are commands, anything else is"
            " sent to the room you are in."
        ),
        epilog=(
            "exit status: 0 after /quit or the end of the input; 1 if the login"
            " fails or the server closes the connection; 2 for bad arguments or"
            " an unreachable server; 130 if interrupted (Ctrl-C)"
        ),
    )
    parser.add_argument(
        "--user",
        required=True,
        metavar="ID",
        help=f"the user id to log in as (1..{MAX_USER_ID_LEN} bytes of UTF-8)",
    )
    parser.add_argument(
        "--password",
        default=os.environ.get(PASSWORD_ENV, ""),
        metavar="PW",
        help=(
            f"the password or login token (up to {MAX_USER_PW_LEN} bytes); default:"
            f" ${PASSWORD_ENV} if set, else empty (enough for a server with open"
            " login). Other users can see it in the process list: prefer"
            f" ${PASSWORD_ENV} for real secrets"
        ),
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"the server's host name or IP address (default: {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"the server's TCP port (default: {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=(
            "how long to wait for the connection, and then for the answer to the"
            f" login (default: {DEFAULT_TIMEOUT:g})"
        ),
    )
    return parser


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    Parse and check the command line; exit with status 2 if it is wrong.
    """
    parser = build_parser()
    options = parser.parse_args(argv)
    user = options.user.encode("utf-8", "surrogateescape")
    password = options.password.encode("utf-8", "surrogateescape")
    if not user:
        parser.error("--user must not be empty")
    if len(user) > MAX_USER_ID_LEN:
        parser.error(f"--user is {len(user)} bytes, the limit is {MAX_USER_ID_LEN}")
    if len(password) > MAX_USER_PW_LEN:
        parser.error(
            f"--password is {len(password)} bytes, the limit is {MAX_USER_PW_LEN}"
        )
    if b"\0" in user or b"\0" in password:
        parser.error("--user and --password cannot contain NUL")
    return options


def _stdio(terminal: Terminal) -> None:
    from twisted.internet.stdio import StandardIO

    StandardIO(terminal)


def _describe_connect_error(error: BaseException) -> str:
    if isinstance(error, ConnectError) and error.args and error.args[0]:
        # The system's words ("Connection refused"), without Twisted's preamble.
        return str(error.args[0])
    text = str(error).strip() or type(error).__name__
    return text.rstrip(".")


async def run(reactor: Reactor, options: argparse.Namespace) -> None:
    """
    Connect, log in and chat until the session ends; raise L{SystemExit} with
    the exit code.
    """
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    client = ChatClient(
        reactor,
        options.user,
        options.password,
        _stdio,
        timeout=options.timeout,
        interactive=sys.stdin.isatty(),
        encoding=encoding,
    )
    endpoint = HostnameEndpoint(
        reactor, options.host, options.port, timeout=options.timeout
    )
    connecting = connectProtocol(endpoint, client.connection)

    def interrupted() -> Deferred[None] | None:
        # Ctrl-C (or SIGTERM): the reactor is about to stop. Flush what is
        # shown and leave with EXIT_INTERRUPTED rather than react's 0.
        if not connecting.called:
            connecting.cancel()
            return None
        return client.interrupt()

    reactor.addSystemEventTrigger("before", "shutdown", interrupted)
    try:
        await connecting
    except CancelledError:
        raise SystemExit(EXIT_INTERRUPTED) from None
    except Exception as e:
        host = f"[{options.host}]" if ":" in options.host else options.host
        address = f"{host}:{options.port}"
        print(
            f"{PROGRAM}: cannot connect to {address}: {_describe_connect_error(e)}",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_UNREACHABLE) from None
    client.connected()
    raise SystemExit(await client.done)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """
    The C{chatsvc-client} console script.
    """
    options = parse_arguments(argv)
    task.react(run, (options,))


if __name__ == "__main__":
    main()


__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "HELP_TEXT",
    "ChatClient",
    "Clock",
    "Command",
    "DelayedCall",
    "Enter",
    "Help",
    "Invalid",
    "Leave",
    "Quit",
    "Reactor",
    "Say",
    "ServerConnection",
    "Terminal",
    "build_parser",
    "main",
    "parse_arguments",
    "parse_command",
    "run",
]
