# -*- test-case-name: tests.test_cluster_stream -*-
"""
The events of a room's stream, as published on its Redis channel.

Every event is one pub/sub message; the order Redis publishes them in is the
room's order, the same for every node. Byte layouts (integers big-endian):

    - chat: C{C}, header, the encoded ROOM_CHAT_NOTIFY packet;
    - enter: C{E}, header, the entering member's record, then the records of
      the members that were there before;
    - leave: C{L}, the leaving member's unique id (8 bytes).

The header names the node that sent the event and its own number for the
request (so that node can answer the requester in the stream's order): one
byte of node id length, the node id, 8 bytes of request number. A member
record is one byte of user id length, the unique id (8 bytes), the user id.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

_ID = struct.Struct(">q")
_TOKEN = struct.Struct(">Q")


class StreamError(ValueError):
    """
    A message on a room's channel that is not a stream event.
    """


class Member(NamedTuple):
    """
    A room member as the cluster knows it.
    """

    unique_id: int
    user_id: bytes


@dataclass(frozen=True, slots=True)
class ChatEvent:
    """
    A chat message, as the notify packet every member receives.
    """

    node: bytes
    token: int
    packet: bytes


@dataclass(frozen=True, slots=True)
class EnterEvent:
    """
    C{member} entered; C{present} were in the room before it.
    """

    node: bytes
    token: int
    member: Member
    present: list[Member]


@dataclass(frozen=True, slots=True)
class LeaveEvent:
    """
    The member with this unique id left (or its node died).
    """

    unique_id: int


Event = ChatEvent | EnterEvent | LeaveEvent


def unique_id_field(unique_id: int) -> bytes:
    """
    The key of a member in a room's hash, as leave events carry it.
    """
    return _ID.pack(unique_id)


def member_record(member: Member) -> bytes:
    """
    A member as enter events and the room hash carry it.
    """
    return bytes((len(member.user_id),)) + _ID.pack(member.unique_id) + member.user_id


def header(node: bytes, token: int) -> bytes:
    """
    The header naming the request C{token} of C{node}.
    """
    return bytes((len(node),)) + node + _TOKEN.pack(token)


def chat_event(node: bytes, token: int, packet: bytes) -> bytes:
    """
    Encode a chat event.
    """
    return b"C" + header(node, token) + packet


def parse_event(data: bytes) -> Event:
    """
    Decode a stream event.

    @raise StreamError: if C{data} is not one.
    """
    try:
        kind = data[:1]
        if kind == b"L":
            if len(data) != 9:
                raise StreamError(f"leave event of {len(data)} bytes")
            return LeaveEvent(_ID.unpack_from(data, 1)[0])
        if kind not in (b"C", b"E"):
            raise StreamError(f"unknown stream event kind {kind!r}")
        end = 2 + data[1]
        node = data[2:end]
        (token,) = _TOKEN.unpack_from(data, end)
        offset = end + 8
        if kind == b"C":
            return ChatEvent(node, token, data[offset:])
        members = []
        while offset < len(data):
            size = data[offset]
            (unique_id,) = _ID.unpack_from(data, offset + 1)
            user = data[offset + 9 : offset + 9 + size]
            if len(user) != size:
                raise StreamError("truncated member record")
            members.append(Member(unique_id, user))
            offset += 9 + size
        if not members:
            raise StreamError("enter event without a member")
        return EnterEvent(node, token, members[0], members[1:])
    except (IndexError, struct.error) as e:
        raise StreamError(f"truncated stream event: {e}") from None
