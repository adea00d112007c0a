# -*- test-case-name: tests.test_chat_packets -*-
"""
The fields of packet bodies: fixed-size NUL-padded strings, their sizes (the
tutorial's C{MAX_USER_ID_LEN} and friends, each plus its NUL) and the struct
layouts of the numeric fields. Every layout of the protocol is defined here
once; requests, responses and events are built from these.
"""

from __future__ import annotations

import struct
from typing import Final

MAX_USER_ID_LEN: Final = 32
MAX_USER_PW_LEN: Final = 32
MAX_CHAT_MSG_SIZE: Final = 256
USER_ID_FIELD: Final = MAX_USER_ID_LEN + 1
USER_PW_FIELD: Final = MAX_USER_PW_LEN + 1
CHAT_MSG_FIELD: Final = MAX_CHAT_MSG_SIZE + 1
#: The user count of a ROOM_USER_LIST_NTF is one signed byte.
MAX_USERS_PER_LIST: Final = 127

#: LOGIN_REQUEST: user id and password fields.
LOGIN_BODY: Final = USER_ID_FIELD + USER_PW_FIELD
#: ROOM_CHAT_NOTIFY: user id and message fields.
CHAT_NOTIFY_BODY: Final = USER_ID_FIELD + CHAT_MSG_FIELD
#: ROOM_ENTER_REQUEST: the room number, int32.
ROOM_NUMBER: Final = struct.Struct("<i")
#: LOGIN_RESPONSE's result: uint16.
LOGIN_RESULT: Final = struct.Struct("<H")
#: The other responses' result: int16.
RESULT: Final = struct.Struct("<h")
#: One user of ROOM_NEW_USER_NTF / ROOM_USER_LIST_NTF: UserUniqueId int64 and
#: IdLen int8, followed by IdLen bytes of user id.
USER_ENTRY: Final = struct.Struct("<qb")
#: ROOM_LEAVE_USER_NTF: UserUniqueId int64.
UNIQUE_ID: Final = struct.Struct("<q")


def pack_str(value: bytes | str, size: int) -> bytes:
    """
    Encode C{value} as a fixed-size, NUL-padded field of C{size} bytes.

    Text is encoded as UTF-8. A value that exactly fills the field has no NUL.

    @raise ValueError: if the value is longer than the field.
    """
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if len(raw) > size:
        raise ValueError(f"{len(raw)} bytes do not fit a {size}-byte field")
    return raw.ljust(size, b"\0")


def unpack_str(field: bytes) -> bytes:
    """
    Return a fixed-size string field up to its first NUL (or all of it).
    """
    end = field.find(b"\0")
    return field if end < 0 else field[:end]
