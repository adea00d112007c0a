# -*- test-case-name: tests.test_chat_packets -*-
"""
What the server sends: responses carrying a result code, and the room
notifies.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from chatsvc.protocol.fields import (
    CHAT_MSG_FIELD,
    LOGIN_RESULT,
    MAX_USERS_PER_LIST,
    RESULT,
    UNIQUE_ID,
    USER_ENTRY,
    USER_ID_FIELD,
    pack_str,
)
from chatsvc.protocol.framing import (
    DEFAULT_MAX_PACKET_SIZE,
    HEADER,
    HEADER_SIZE,
    encode_packet,
)
from chatsvc.protocol.ids import PacketId, Result

_CHAT_NOTIFY_HEADER = HEADER.pack(
    HEADER_SIZE + USER_ID_FIELD + CHAT_MSG_FIELD, PacketId.ROOM_CHAT_NOTIFY, 0
)


def result_response(packet_id: PacketId, result: Result) -> bytes:
    """
    Encode a response that carries only a result code (7 bytes).
    """
    layout = LOGIN_RESULT if packet_id == PacketId.LOGIN_RESPONSE else RESULT
    return encode_packet(packet_id, layout.pack(result))


def chat_notify(user_id: bytes, message: bytes) -> bytes:
    """
    Encode a ROOM_CHAT_NOTIFY (always 295 bytes).
    """
    return chat_notify_prefix(user_id) + pack_str(message, CHAT_MSG_FIELD)


def chat_notify_prefix(user_id: bytes) -> bytes:
    """
    The part of every ROOM_CHAT_NOTIFY of C{user_id} before its message (the
    header and the user id field): a sender's notifies are this followed by
    the message padded to C{CHAT_MSG_FIELD} bytes.
    """
    return _CHAT_NOTIFY_HEADER + pack_str(user_id, USER_ID_FIELD)


def new_user_notify(unique_id: int, user_id: bytes) -> bytes:
    """
    Encode a ROOM_NEW_USER_NTF.
    """
    return encode_packet(
        PacketId.ROOM_NEW_USER_NTF, USER_ENTRY.pack(unique_id, len(user_id)) + user_id
    )


def leave_user_notify(unique_id: int) -> bytes:
    """
    Encode a ROOM_LEAVE_USER_NTF.
    """
    return encode_packet(PacketId.ROOM_LEAVE_USER_NTF, UNIQUE_ID.pack(unique_id))


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
        entry = USER_ENTRY.pack(unique_id, len(user_id)) + user_id
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
