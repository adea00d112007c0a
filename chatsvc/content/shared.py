# -*- test-case-name: tests.test_chat -*-
"""
Rooms shared with other servers (a cluster): who may enter and the order of
each room's events are decided elsewhere, so room entry and chat become
requests the chat rules send out and answers they get back later.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol, TypeVar

H_contra = TypeVar("H_contra", bound=Hashable, contravariant=True)


class SharedRooms(Protocol[H_contra]):
    """
    What L{chatsvc.content.chat.ChatServer} asks of rooms it shares. Answers
    come back through the server's C{entered}, C{entry_refused} and
    C{chats_answered}; every notify reaches the local members through the
    shared rooms, not the server's room stream.
    """

    def enter(
        self, room: int, handle: H_contra, unique_id: int, user_id: bytes
    ) -> None:
        """
        Ask for C{handle} to enter room C{room}.
        """

    def leave(self, room: int, handle: H_contra, unique_id: int) -> None:
        """
        C{handle} left C{room}: nothing more of the room reaches it.
        """

    def cancel(self, handle: H_contra) -> None:
        """
        C{handle} is gone while its entry was being decided.
        """

    def chat(self, room: int, handle: H_contra, notify: bytes) -> None:
        """
        Publish C{handle}'s chat notify to C{room} at the end of the turn.
        """

    def flush(self) -> None:
        """
        The turn ends: publish its chats.
        """
