# -*- test-case-name: tests.test_chat_packets -*-
"""
Packet ids and result codes of the tutorial's protocol (its C{PACKET_ID} and
C{ERROR_CODE}), as far as chatsvc speaks them.
"""

from __future__ import annotations

from enum import IntEnum


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
    NEW_ROOM_FAIL_ENTER = 42
    ENTER_ROOM_NOT_FINDE_USER = 51
    ENTER_ROOM_INVALID_USER_STATUS = 52
    ENTER_ROOM_FULL_USER = 54
    ROOM_INVALID_INDEX = 61
    ROOM_NOT_USED = 62
    ROOM_TOO_MANY_PACKET = 63
    CHAT_ROOM_INVALID_ROOM_NUMBER = 81
