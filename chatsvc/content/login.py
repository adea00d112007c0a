# -*- test-case-name: tests.test_chat,tests.integration.test_chat_tcp -*-
"""
Login back ends: who may log in with which password.
"""

from __future__ import annotations

from typing import Protocol


class LoginBackend(Protocol):
    """
    Checks credentials. Implementations may wait on I/O; they must not raise
    for a wrong password, only for a failure to check at all.
    """

    description: str

    async def check(self, user_id: bytes, password: bytes) -> bool:
        """
        Return whether C{user_id} may log in with C{password}.
        """
        ...

    async def close(self) -> None:
        """
        Release what the back end holds (connections, timers).
        """
        ...


class OpenLogin:
    """
    The tutorial's step 8: any non-empty user id logs in, whatever the password.
    """

    description = "open login (any user id, password not checked)"

    async def check(self, user_id: bytes, password: bytes) -> bool:
        return bool(user_id)

    async def close(self) -> None:
        pass
