# -*- test-case-name: tests.test_chat_packets -*-
"""
What clients send: the chat requests, parsed from packet bodies (for the
server) and encoded as the reference client does (for clients).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from chatsvc.protocol.fields import (
    CHAT_MSG_FIELD,
    LOGIN_BODY,
    ROOM_NUMBER,
    USER_ID_FIELD,
    USER_PW_FIELD,
    pack_str,
    unpack_str,
)
from chatsvc.protocol.framing import ProtocolError, encode_packet
from chatsvc.protocol.ids import PacketId


@dataclass(frozen=True, slots=True)
class LoginRequest:
    """
    LOGIN_REQUEST (201): user id and password, each up to its first NUL.
    """

    user_id: bytes
    password: bytes


@dataclass(frozen=True, slots=True)
class EnterRoomRequest:
    """
    ROOM_ENTER_REQUEST (206).
    """

    room_number: int


@dataclass(frozen=True, slots=True)
class LeaveRoomRequest:
    """
    ROOM_LEAVE_REQUEST (215).
    """


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """
    ROOM_CHAT_REQUEST (221): the message up to its first NUL.
    """

    message: bytes


Request = LoginRequest | EnterRoomRequest | LeaveRoomRequest | ChatRequest

_LEAVE_REQUEST = LeaveRoomRequest()


_ROOM_CHAT_REQUEST: Final = PacketId.ROOM_CHAT_REQUEST.value


def chat_message(body: bytes) -> bytes:
    """
    Return the message of a ROOM_CHAT_REQUEST's body (what L{parse_request}
    puts in its L{ChatRequest}).

    @raise ProtocolError: for a body of the wrong length.
    """
    if not 1 <= len(body) <= CHAT_MSG_FIELD:
        raise ProtocolError(f"ROOM_CHAT_REQUEST body of {len(body)} bytes")
    end = body.find(b"\0")
    return body if end < 0 else body[:end]


def parse_request(packet_id: int, body: bytes) -> Request | None:
    """
    Return the request a client packet carries, or L{None} for an id that is
    not a chat request.

    @raise ProtocolError: for a chat request whose body has the wrong length.
    """
    if packet_id == _ROOM_CHAT_REQUEST:
        return ChatRequest(chat_message(body))
    size = len(body)
    if packet_id == PacketId.LOGIN_REQUEST:
        if size != LOGIN_BODY:
            raise ProtocolError(f"LOGIN_REQUEST body of {size} bytes, not {LOGIN_BODY}")
        return LoginRequest(
            unpack_str(body[:USER_ID_FIELD]), unpack_str(body[USER_ID_FIELD:])
        )
    if packet_id == PacketId.ROOM_ENTER_REQUEST:
        if size != ROOM_NUMBER.size:
            raise ProtocolError(f"ROOM_ENTER_REQUEST body of {size} bytes, not 4")
        return EnterRoomRequest(ROOM_NUMBER.unpack(body)[0])
    if packet_id == PacketId.ROOM_LEAVE_REQUEST:
        if size:
            raise ProtocolError(f"ROOM_LEAVE_REQUEST body of {size} bytes, not 0")
        return _LEAVE_REQUEST
    return None


def login_request(user_id: bytes | str, password: bytes | str) -> bytes:
    """
    Encode a LOGIN_REQUEST as the reference client does (always 71 bytes).
    """
    return encode_packet(
        PacketId.LOGIN_REQUEST,
        pack_str(user_id, USER_ID_FIELD) + pack_str(password, USER_PW_FIELD),
    )


def enter_room_request(room_number: int) -> bytes:
    """
    Encode a ROOM_ENTER_REQUEST.
    """
    return encode_packet(PacketId.ROOM_ENTER_REQUEST, ROOM_NUMBER.pack(room_number))


def leave_room_request() -> bytes:
    """
    Encode a ROOM_LEAVE_REQUEST.
    """
    return encode_packet(PacketId.ROOM_LEAVE_REQUEST)


def chat_request(message: bytes | str) -> bytes:
    """
    Encode a ROOM_CHAT_REQUEST as the reference client does (always 262 bytes).
    """
    return encode_packet(PacketId.ROOM_CHAT_REQUEST, pack_str(message, CHAT_MSG_FIELD))
