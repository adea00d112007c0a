# -*- test-case-name: tests.test_chat_packets,tests.test_client_cli -*-
"""
What a client reads from the server: server packets decoded into events, at
the offsets the reference client uses.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from chatsvc.protocol.fields import (
    CHAT_NOTIFY_BODY,
    LOGIN_RESULT,
    RESULT,
    UNIQUE_ID,
    USER_ENTRY,
    USER_ID_FIELD,
    unpack_str,
)
from chatsvc.protocol.framing import Packet, ProtocolError
from chatsvc.protocol.ids import PacketId, Result


@dataclass(frozen=True, slots=True)
class Response:
    """
    A response carrying a result code (LOGIN, ROOM_ENTER, ROOM_LEAVE, ROOM_CHAT).
    """

    packet_id: PacketId
    result: int

    @property
    def ok(self) -> bool:
        """
        Whether the request succeeded.
        """
        return self.result == Result.NONE


@dataclass(frozen=True, slots=True)
class NewUser:
    """
    ROOM_NEW_USER_NTF: somebody entered the room.
    """

    unique_id: int
    user_id: bytes


@dataclass(frozen=True, slots=True)
class UserList:
    """
    ROOM_USER_LIST_NTF: users already in the room, as (unique id, user id).
    """

    users: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class UserLeft:
    """
    ROOM_LEAVE_USER_NTF: somebody left the room.
    """

    unique_id: int


@dataclass(frozen=True, slots=True)
class ChatNotify:
    """
    ROOM_CHAT_NOTIFY: a chat message in the room.
    """

    user_id: bytes
    message: bytes


@dataclass(frozen=True, slots=True)
class Echo:
    """
    DEV_ECHO: the server echoed this body.
    """

    body: bytes


@dataclass(frozen=True, slots=True)
class UnknownPacket:
    """
    A packet id this client does not know.
    """

    packet: Packet


Event = Response | NewUser | UserList | UserLeft | ChatNotify | Echo | UnknownPacket

_RESPONSES = frozenset(
    {
        PacketId.LOGIN_RESPONSE,
        PacketId.ROOM_ENTER_RESPONSE,
        PacketId.ROOM_LEAVE_RESPONSE,
        PacketId.ROOM_CHAT_RESPONSE,
    }
)


def parse_event(packet: Packet) -> Event:
    """
    Decode one server packet.

    @raise ProtocolError: if a known packet has a malformed body.
    """
    packet_id, _, body = packet
    try:
        if packet_id == PacketId.ROOM_CHAT_NOTIFY:
            if len(body) != CHAT_NOTIFY_BODY:
                raise ProtocolError(f"ROOM_CHAT_NOTIFY body of {len(body)} bytes")
            return ChatNotify(
                unpack_str(body[:USER_ID_FIELD]), unpack_str(body[USER_ID_FIELD:])
            )
        if packet_id in _RESPONSES:
            layout = LOGIN_RESULT if packet_id == PacketId.LOGIN_RESPONSE else RESULT
            if len(body) != layout.size:
                raise ProtocolError(f"response {packet_id} body of {len(body)} bytes")
            return Response(PacketId(packet_id), layout.unpack(body)[0])
        if packet_id == PacketId.ROOM_NEW_USER_NTF:
            unique_id, size = USER_ENTRY.unpack_from(body)
            if len(body) != USER_ENTRY.size + size:
                raise ProtocolError("ROOM_NEW_USER_NTF length does not match IdLen")
            return NewUser(unique_id, body[USER_ENTRY.size :])
        if packet_id == PacketId.ROOM_USER_LIST_NTF:
            return UserList(_parse_user_list(body))
        if packet_id == PacketId.ROOM_LEAVE_USER_NTF:
            if len(body) != UNIQUE_ID.size:
                raise ProtocolError(f"ROOM_LEAVE_USER_NTF body of {len(body)} bytes")
            return UserLeft(UNIQUE_ID.unpack(body)[0])
    except struct.error as e:
        raise ProtocolError(f"packet {packet_id} too short: {e}") from None
    if packet_id == PacketId.DEV_ECHO:
        return Echo(body)
    return UnknownPacket(packet)


def _parse_user_list(body: bytes) -> tuple[tuple[int, bytes], ...]:
    if not body:
        raise ProtocolError("ROOM_USER_LIST_NTF without a count")
    users = []
    offset = 1
    for _ in range(body[0]):
        unique_id, size = USER_ENTRY.unpack_from(body, offset)
        offset += USER_ENTRY.size
        if size < 0 or offset + size > len(body):
            raise ProtocolError("ROOM_USER_LIST_NTF entry runs past the packet")
        users.append((unique_id, body[offset : offset + size]))
        offset += size
    if offset != len(body):
        raise ProtocolError("ROOM_USER_LIST_NTF has bytes after its last entry")
    return tuple(users)
