# -*- test-case-name: tests.test_client_cli -*-
"""
What one input line of C{chatsvc-client} asks for: a command or a chat
message, checked against the protocol's limits before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from chatsvc.protocol import MAX_CHAT_MSG_SIZE

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


__all__ = [
    "HELP_TEXT",
    "Command",
    "Enter",
    "Help",
    "Invalid",
    "Leave",
    "Quit",
    "Say",
    "parse_command",
]
