# -*- test-case-name: tests.test_loadtest -*-
"""
The bots' user ids: C{<prefix><index>}, and back from a user id to a bot.
"""

from __future__ import annotations

from chatsvc.protocol import USER_ID_FIELD


class Directory:
    """
    User ids of the bots: C{<prefix><index>}, and back.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.encode("utf-8")
        self._fields: dict[int, bytes] = {}

    def user_id(self, index: int) -> bytes:
        """
        Return the user id of bot C{index}.
        """
        return self.prefix + b"%d" % index

    def field(self, index: int) -> bytes:
        """
        Return the user id of bot C{index} as the 33-byte field of a notify.
        """
        padded = self._fields.get(index)
        if padded is None:
            padded = self._fields[index] = self.user_id(index).ljust(
                USER_ID_FIELD, b"\0"
            )
        return padded

    def index(self, user_id: bytes) -> int | None:
        """
        Return the bot index of a user id, or L{None} for somebody else.
        """
        prefix = self.prefix
        if not user_id.startswith(prefix):
            return None
        digits = user_id[len(prefix) :]
        if not digits.isdigit() or (digits[:1] == b"0" and len(digits) > 1):
            return None
        return int(digits)
