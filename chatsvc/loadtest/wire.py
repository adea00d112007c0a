# -*- test-case-name: tests.test_loadtest -*-
"""
The text of a bot's chat message: who sent it, its sequence number, its visit
and when it was sent, fixed width so that a receiver finds each number at a
known offset (and numpy finds them in a whole run of notifies at once).
"""

from __future__ import annotations

import struct
from typing import Final

from chatsvc.protocol import CHAT_MSG_FIELD, HEADER_SIZE, USER_ID_FIELD

#: sender, seq, visit, send time (monotonic ns)
MESSAGE_FORMAT: Final = b"%08d:%010d:%010d:%018d"
MESSAGE_SIZE: Final = 49
MAX_SENDER: Final = 10**8 - 1
#: A ROOM_CHAT_NOTIFY is always this long.
NOTIFY_SIZE: Final = HEADER_SIZE + USER_ID_FIELD + CHAT_MSG_FIELD
#: A chat notify's body up to the end of a bot message: the user id field,
#: the message's four numbers (skipping the colons) and the byte after it.
NOTIFY_BODY: Final = struct.Struct(f"{USER_ID_FIELD}s8sx10sx10sx18sB")


def chat_message(sender: int, seq: int, visit: int, sent_ns: int) -> bytes:
    """
    Return the text of one bot chat message (always L{MESSAGE_SIZE} bytes).
    """
    return MESSAGE_FORMAT % (sender, seq, visit, sent_ns)


def parse_chat_message(message: bytes | bytearray) -> tuple[int, int, int, int] | None:
    """
    Return C{(sender, seq, visit, sent_ns)} of a bot chat message, or L{None}
    for any other text.
    """
    if len(message) != MESSAGE_SIZE or message[8:31:11] != b":::":
        return None
    try:
        return (
            int(message[0:8]),
            int(message[9:19]),
            int(message[20:30]),
            int(message[31:49]),
        )
    except ValueError:
        return None
