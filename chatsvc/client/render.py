# -*- test-case-name: tests.test_client_cli -*-
"""
What the terminal client shows: server events as text lines, without any I/O.

L{render_event} is a pure function from one event (and the names of the room's
members) to one line. L{ChatView} is the little state around it: who is in the
room, which requests still wait for their answer. Neither touches a socket, a
terminal or a reactor.
"""

from __future__ import annotations

import unicodedata
from collections import deque
from collections.abc import Mapping
from typing import Final

from chatsvc.protocol import (
    ChatNotify,
    Echo,
    Event,
    NewUser,
    PacketId,
    Response,
    Result,
    UnknownPacket,
    UserLeft,
    UserList,
)

#: Every C{ERROR_CODE} of the protocol: its name and what it means to a user.
RESULTS: Final[Mapping[int, tuple[str, str]]] = {
    0: ("NONE", "success"),
    11: ("USER_MGR_INVALID_USER_INDEX", "invalid user index"),
    12: ("USER_MGR_INVALID_USER_UNIQUEID", "invalid user unique id"),
    31: ("LOGIN_USER_ALREADY", "this user is already logged in"),
    32: ("LOGIN_USER_USED_ALL_OBJ", "the server is full"),
    33: (
        "LOGIN_USER_INVALID_PW",
        "unknown user or wrong password, or the server could not check the password",
    ),
    41: ("NEW_ROOM_USED_ALL_OBJ", "no free room"),
    42: ("NEW_ROOM_FAIL_ENTER", "could not enter the new room"),
    51: ("ENTER_ROOM_NOT_FINDE_USER", "not logged in"),
    52: ("ENTER_ROOM_INVALID_USER_STATUS", "already in a room; /leave first"),
    53: ("ENTER_ROOM_NOT_USED_STATUS", "the room is not in use"),
    54: ("ENTER_ROOM_FULL_USER", "room is full"),
    61: ("ROOM_INVALID_INDEX", "no such room, or not in a room"),
    62: ("ROOM_NOT_USED", "the room is not in use"),
    63: ("ROOM_TOO_MANY_PACKET", "sending too fast; slow down"),
    71: ("LEAVE_ROOM_INVALID_ROOM_INDEX", "invalid room to leave"),
    81: ("CHAT_ROOM_INVALID_ROOM_NUMBER", "you are not in a room"),
}

# Where one code means something narrower for one request.
_SPECIFIC: Final[Mapping[tuple[int, int], str]] = {
    (PacketId.ROOM_ENTER_RESPONSE, 61): "no such room",
    (PacketId.ROOM_LEAVE_RESPONSE, 61): "you are not in a room",
}

_ACTIONS: Final[Mapping[int, str]] = {
    PacketId.LOGIN_RESPONSE: "login",
    PacketId.ROOM_ENTER_RESPONSE: "enter",
    PacketId.ROOM_LEAVE_RESPONSE: "leave",
    PacketId.ROOM_CHAT_RESPONSE: "chat",
}

_REPLACEMENT: Final = "\N{REPLACEMENT CHARACTER}"
#: Unicode categories that change how the text around them looks, or are
#: invisible: format characters and the line and paragraph separators.
_SHOWN_AS_CODE_POINT: Final = frozenset({"Cf", "Zl", "Zp"})
#: The rooms of a chatsvc server started with the defaults.
_DEFAULT_ROOMS: Final = "0 to 9"


def describe_result(result: int, packet_id: int | None = None) -> str:
    """
    Return a result code as C{"54 ENTER_ROOM_FULL_USER (room is full)"}.

    @param packet_id: the response that carried it, for a more precise meaning.
    """
    name, meaning = RESULTS.get(result, ("", "unknown result code"))
    if packet_id is not None:
        meaning = _SPECIFIC.get((packet_id, result), meaning)
    return f"{result} {name} ({meaning})" if name else f"{result} ({meaning})"


def failure_text(response: Response) -> str:
    """
    Return a failed response as C{"enter failed: 54 ENTER_ROOM_FULL_USER (...)"}.
    """
    action = _ACTIONS.get(response.packet_id, response.packet_id.name)
    return f"{action} failed: {describe_result(response.result, response.packet_id)}"


def clean_text(raw: bytes) -> str:
    """
    Decode text a peer sent (UTF-8, invalid bytes replaced) so that printing it
    cannot move the cursor, clear the screen, forge a line or pass for other
    text: control characters become U+FFFD, and format and separator
    characters (Unicode categories Cf, Zl, Zp: bidi overrides, zero-width
    spaces and joiners, line and paragraph separators) are shown by their
    code point, as C{<U+202E>}.
    """
    text = raw.decode("utf-8", "replace")
    if text.isprintable():
        return text
    return "".join(_visible(ch) for ch in text)


def _visible(ch: str) -> str:
    category = unicodedata.category(ch)
    if category == "Cc":
        return _REPLACEMENT
    if category in _SHOWN_AS_CODE_POINT:
        return f"<U+{ord(ch):04X}>"
    return ch


def user_name(unique_id: int, names: Mapping[int, str]) -> str:
    """
    Return the name a unique id is known by, or C{"user #N"} for a stranger.
    """
    return names.get(unique_id) or f"user #{unique_id}"


def render_event(
    event: Event, names: Mapping[int, str], *, room: int | None = None
) -> str | None:
    """
    Return the line that shows C{event}, or L{None} when there is nothing to
    show (a successful chat response: the message itself comes as a notify).

    @param names: user names by unique id, as known I{before} this event.
    @param room: the room number an enter or leave response is about.
    """
    match event:
        case ChatNotify(user_id, message):
            return f"<{clean_text(user_id)}> {clean_text(message)}"
        case Response(PacketId.ROOM_ENTER_RESPONSE, Result.ROOM_INVALID_INDEX) if (
            room is not None
        ):
            return (
                f"! {failure_text(event)}: there is no room {room} on this server"
                f" (a chatsvc server started with the defaults has rooms"
                f" {_DEFAULT_ROOMS}; its --rooms and --room-start set others)"
            )
        case Response(_, result) if result:
            return f"! {failure_text(event)}"
        case Response(PacketId.LOGIN_RESPONSE):
            return "* logged in"
        case Response(PacketId.ROOM_ENTER_RESPONSE):
            return (
                "* you entered the room"
                if room is None
                else f"* you entered room {room}"
            )
        case Response(PacketId.ROOM_LEAVE_RESPONSE):
            return "* you left the room" if room is None else f"* you left room {room}"
        case Response():
            return None
        case NewUser(_, user_id):
            return f"* {clean_text(user_id)} entered the room"
        case UserList(users) if not users:
            return "* nobody else is here"
        case UserList(users):
            listed = ", ".join(clean_text(user_id) for _, user_id in users)
            return f"* users here: {listed}"
        case UserLeft(unique_id):
            return f"* {user_name(unique_id, names)} left the room"
        case Echo(body):
            return f"* echo: {clean_text(body)}"
        case UnknownPacket(packet):
            return (
                f"? packet id {packet.packet_id} this client does not know"
                f" ({len(packet.body)} bytes)"
            )
    raise TypeError(f"not an event: {event!r}")  # pragma: no cover


class ChatView:
    """
    What the terminal knows of the session after login: the room it is in, its
    members' names, and the requests whose answers have not come yet.

    Tell it each request sent (L{sent_enter}, L{sent_leave}, L{sent_chat}) and
    each event received (L{receive}, which returns the lines to show). The
    server answers a connection's requests in order, so the answers are matched
    to the requests first in, first out.
    """

    def __init__(self, user_id: bytes) -> None:
        self.user_id = user_id
        self.room: int | None = None
        self.names: dict[int, str] = {}
        self._pending: deque[tuple[PacketId, int | None]] = deque()
        self._echoes_due = 0

    @property
    def idle(self) -> bool:
        """
        Whether every request sent has been answered, and every chat message
        accepted has come back as a notify.
        """
        return not self._pending and not self._echoes_due

    def sent_enter(self, room: int) -> None:
        """
        A ROOM_ENTER_REQUEST for C{room} went out.
        """
        self._pending.append((PacketId.ROOM_ENTER_RESPONSE, room))

    def sent_leave(self) -> None:
        """
        A ROOM_LEAVE_REQUEST went out.
        """
        self._pending.append((PacketId.ROOM_LEAVE_RESPONSE, None))

    def sent_chat(self) -> None:
        """
        A ROOM_CHAT_REQUEST went out.
        """
        self._pending.append((PacketId.ROOM_CHAT_RESPONSE, None))

    def receive(self, event: Event) -> list[str]:
        """
        Take one server event into account; return the lines that show it.
        """
        room = None
        if isinstance(event, Response):
            room = self._answered(event)
        line = render_event(event, self.names, room=room)
        match event:
            case NewUser(unique_id, user_id):
                self.names[unique_id] = clean_text(user_id)
            case UserList(users):
                self.names.update((uid, clean_text(name)) for uid, name in users)
            case UserLeft(unique_id):
                self.names.pop(unique_id, None)
            case ChatNotify(user_id) if user_id == self.user_id and self._echoes_due:
                self._echoes_due -= 1
        return [] if line is None else [line]

    def _answered(self, response: Response) -> int | None:
        """
        Match a response to its request; return the room it was about.
        """
        room = None
        if self._pending and self._pending[0][0] == response.packet_id:
            room = self._pending.popleft()[1]
        if not response.ok:
            return room
        match response.packet_id:
            case PacketId.ROOM_ENTER_RESPONSE:
                self.room = room
                self.names.clear()
            case PacketId.ROOM_LEAVE_RESPONSE:
                room, self.room = self.room, None
                self.names.clear()
                # Messages accepted just before leaving may never come back.
                self._echoes_due = 0
            case PacketId.ROOM_CHAT_RESPONSE:
                self._echoes_due += 1
        return room


__all__ = [
    "RESULTS",
    "ChatView",
    "clean_text",
    "describe_result",
    "failure_text",
    "render_event",
    "user_name",
]
