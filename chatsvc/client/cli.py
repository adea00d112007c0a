# -*- test-case-name: tests.test_client_cli -*-
"""
C{chatsvc-client}: a terminal chat client for chatsvc and the edu_cpp_IOCP
tutorial's servers.

It logs in, then reads commands and chat lines and prints every server event
as a line of text. The pieces:

  - L{chatsvc.client.commands}: one input line to a command (pure);
  - L{chatsvc.client.render}: events to lines (pure);
  - L{chatsvc.client.connection}: the TCP side, bytes to events;
  - L{chatsvc.client.console}: the interactive terminal, whose input line
    stays whole below incoming messages (prompt_toolkit, on Twisted's asyncio
    reactor);
  - L{chatsvc.client.terminal}: plain lines, when standard input or output
    is not a terminal (a pipe, a file);
  - L{chatsvc.client.session}: the session that ties them together;
  - this module: the command line, run under L{twisted.internet.task.react}.

Exit codes: 0 after C{/quit} or the end of the input; 1 when the login fails
or the server closes the connection; 2 for bad arguments or an unreachable
server; 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from typing import Final, NoReturn

from twisted.internet import task
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IReactorCore, IReactorTime

from chatsvc.client.session import (
    DEFAULT_TIMEOUT,
    EXIT_INTERRUPTED,
    EXIT_UNREACHABLE,
    PROGRAM,
    ChatClient,
)
from chatsvc.client.terminal import LineTerminal, Screen
from chatsvc.protocol import MAX_USER_ID_LEN, MAX_USER_PW_LEN

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 11021
PASSWORD_ENV: Final = "CHATSVC_PASSWORD"


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


def interactive() -> bool:
    """
    Whether standard input and output are a terminal (then the input line is
    edited by L{chatsvc.client.console.Console}).
    """
    return sys.stdin.isatty() and sys.stdout.isatty()


def open_console(
    on_line: Callable[[str], None],
    on_end: Callable[[], None],
    on_interrupt: Callable[[], object],
) -> Screen:
    """
    Open the interactive terminal (needs Twisted's asyncio reactor).
    """
    from chatsvc.client.console import Console

    console = Console(on_line, on_end, on_interrupt)
    console.start()
    return console


def open_lines(
    on_line: Callable[[str], None],
    on_end: Callable[[], None],
    on_interrupt: Callable[[], object],
) -> Screen:
    """
    Read and print plain lines on standard input and output.
    """
    from twisted.internet.stdio import StandardIO

    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    terminal = LineTerminal(on_line, on_end, encoding)
    StandardIO(terminal)
    return terminal


def _describe_connect_error(error: BaseException) -> str:
    if isinstance(error, ConnectError) and error.args and error.args[0]:
        # The system's words ("Connection refused"), without Twisted's preamble.
        return str(error.args[0])
    text = str(error).strip() or type(error).__name__
    return text.rstrip(".")


async def run(reactor: IReactorTime, options: argparse.Namespace) -> None:
    """
    Connect, log in and chat until the session ends; raise L{SystemExit} with
    the exit code.
    """
    console = interactive()
    client = ChatClient(
        reactor,
        options.user,
        options.password,
        open_console if console else open_lines,
        timeout=options.timeout,
        interactive=console,
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

    IReactorCore(reactor).addSystemEventTrigger("before", "shutdown", interrupted)
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
    if interactive():
        # prompt_toolkit runs on asyncio: so must the reactor.
        from twisted.internet import asyncioreactor

        asyncioreactor.install(_new_event_loop())
    task.react(run, (options,))


def _new_event_loop() -> asyncio.AbstractEventLoop:
    # Twisted's asyncio reactor needs add_reader: a selector loop on Windows too.
    return asyncio.SelectorEventLoop()


if __name__ == "__main__":
    main()


__all__ = [
    "build_parser",
    "interactive",
    "main",
    "open_console",
    "open_lines",
    "parse_arguments",
    "run",
]
