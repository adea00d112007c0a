# -*- test-case-name: tests.test_chat -*-
"""
Who is logged in: the duplicate-login check.

L{Presence} is the seam for a cluster: an implementation backed by a shared
store makes the check span every node without changing the chat rules.
"""

from __future__ import annotations

from typing import Protocol


class Presence(Protocol):
    """
    Claims and releases user ids.
    """

    def claim(self, user_id: bytes) -> bool:
        """
        Mark C{user_id} as logged in; return L{False} if it already is.
        """
        ...

    def release(self, user_id: bytes) -> None:
        """
        Mark C{user_id} as logged out.
        """
        ...


class LocalPresence:
    """
    Presence within one process.
    """

    def __init__(self) -> None:
        self._users: set[bytes] = set()

    def claim(self, user_id: bytes) -> bool:
        if user_id in self._users:
            return False
        self._users.add(user_id)
        return True

    def release(self, user_id: bytes) -> None:
        self._users.discard(user_id)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._users

    def __len__(self) -> int:
        return len(self._users)
