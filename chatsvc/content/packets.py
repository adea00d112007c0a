# -*- test-case-name: tests.test_chat_packets -*-
"""
The chat packets of the tutorial's protocol: ids, result codes, request
parsing and the encoding of responses and notifies (layouts in PROTOCOL.md).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from chatsvc.net.codec import (
    DEFAULT_MAX_PACKET_SIZE,
    HEADER_SIZE,
    ProtocolError,
    encode_packet,
    pack_str,
    unpack_str,
)

MAX_USER_ID_LEN: Final = 32
MAX_USER_PW_LEN: Final = 32
MAX_CHAT_MSG_SIZE: Final = 256
USER_ID_FIELD: Final = MAX_USER_ID_LEN + 1
USER_PW_FIELD: Final = MAX_USER_PW_LEN + 1
CHAT_MSG_FIELD: Final = MAX_CHAT_MSG_SIZE + 1
MAX_USERS_PER_LIST: Final = 127


class PacketId(IntEnum):
    """
    The packet ids chatsvc speaks.
    """

    DEV_ECHO = 1
    LOGIN_REQUEST = 201
    LOGIN_RESPONSE = 202
    ROOM_ENTER_REQUEST = 206
    ROOM_ENTER_RESPONSE = 207
    ROOM_NEW_USER_NTF = 208
    ROOM_USER_LIST_NTF = 209
    ROOM_LEAVE_REQUEST = 215
    ROOM_LEAVE_RESPONSE = 216
    ROOM_LEAVE_USER_NTF = 217
    ROOM_CHAT_REQUEST = 221
    ROOM_CHAT_RESPONSE = 222
    ROOM_CHAT_NOTIFY = 223


class Result(IntEnum):
    """
    The tutorial's C{ERROR_CODE} values that chatsvc sends.
    """

    NONE = 0
    LOGIN_USER_ALREADY = 31
    LOGIN_USER_USED_ALL_OBJ = 32
    LOGIN_USER_INVALID_PW = 33
    ENTER_ROOM_NOT_FINDE_USER = 51
    ENTER_ROOM_INVALID_USER_STATUS = 52
    ENTER_ROOM_FULL_USER = 54
    ROOM_INVALID_INDEX = 61
    ROOM_TOO_MANY_PACKET = 63
    CHAT_ROOM_INVALID_ROOM_NUMBER = 81


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

LOGIN_BODY: Final = USER_ID_FIELD + USER_PW_FIELD
_ROOM_NUMBER = struct.Struct("<i")
_RESULT_U16 = struct.Struct("<H")
_RESULT_I16 = struct.Struct("<h")
_USER_ENTRY = struct.Struct("<qb")
_LEAVE_USER = struct.Struct("<q")
_LEAVE_REQUEST = LeaveRoomRequest()


def parse_request(packet_id: int, body: bytes) -> Request | None:
    """
    Return the request a client packet carries, or L{None} for an id that is
    not a chat request.

    @raise ProtocolError: for a chat request whose body has the wrong length.
    """
    size = len(body)
    if packet_id == PacketId.ROOM_CHAT_REQUEST:
        if not 1 <= size <= CHAT_MSG_FIELD:
            raise ProtocolError(f"ROOM_CHAT_REQUEST body of {size} bytes")
        return ChatRequest(unpack_str(body))
    if packet_id == PacketId.LOGIN_REQUEST:
        if size != LOGIN_BODY:
            raise ProtocolError(f"LOGIN_REQUEST body of {size} bytes, not {LOGIN_BODY}")
        return LoginRequest(
            unpack_str(body[:USER_ID_FIELD]), unpack_str(body[USER_ID_FIELD:])
        )
    if packet_id == PacketId.ROOM_ENTER_REQUEST:
        if size != _ROOM_NUMBER.size:
            raise ProtocolError(f"ROOM_ENTER_REQUEST body of {size} bytes, not 4")
        return EnterRoomRequest(_ROOM_NUMBER.unpack(body)[0])
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
    return encode_packet(PacketId.ROOM_ENTER_REQUEST, _ROOM_NUMBER.pack(room_number))


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


def result_response(packet_id: PacketId, result: Result) -> bytes:
    """
    Encode a response that carries only a result code (7 bytes).
    """
    layout = _RESULT_U16 if packet_id == PacketId.LOGIN_RESPONSE else _RESULT_I16
    return encode_packet(packet_id, layout.pack(result))


def chat_notify(user_id: bytes, message: bytes) -> bytes:
    """
    Encode a ROOM_CHAT_NOTIFY (always 295 bytes).
    """
    return encode_packet(
        PacketId.ROOM_CHAT_NOTIFY,
        pack_str(user_id, USER_ID_FIELD) + pack_str(message, CHAT_MSG_FIELD),
    )


def new_user_notify(unique_id: int, user_id: bytes) -> bytes:
    """
    Encode a ROOM_NEW_USER_NTF.
    """
    return encode_packet(
        PacketId.ROOM_NEW_USER_NTF, _USER_ENTRY.pack(unique_id, len(user_id)) + user_id
    )


def leave_user_notify(unique_id: int) -> bytes:
    """
    Encode a ROOM_LEAVE_USER_NTF.
    """
    return encode_packet(PacketId.ROOM_LEAVE_USER_NTF, _LEAVE_USER.pack(unique_id))


def user_list_notifies(
    users: Sequence[tuple[int, bytes]], max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
) -> Iterator[bytes]:
    """
    Encode C{(unique_id, user_id)} pairs as ROOM_USER_LIST_NTF packets, each at
    most C{max_packet_size} bytes and 127 users; an empty room is one packet
    with a count of 0, so a client always learns who is there.
    """
    room = max_packet_size - HEADER_SIZE - 1
    entries: list[bytes] = []
    used = 0
    for unique_id, user_id in users:
        entry = _USER_ENTRY.pack(unique_id, len(user_id)) + user_id
        if entries and (used + len(entry) > room or len(entries) == MAX_USERS_PER_LIST):
            yield _user_list(entries)
            entries, used = [], 0
        entries.append(entry)
        used += len(entry)
    yield _user_list(entries)


def _user_list(entries: list[bytes]) -> bytes:
    return encode_packet(
        PacketId.ROOM_USER_LIST_NTF, bytes([len(entries)]) + b"".join(entries)
    )
