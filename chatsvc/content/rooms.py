# -*- test-case-name: tests.test_chat,tests.test_rooms -*-
"""
Rooms: the numbered rooms of a server and who is in each.

Who is in a room changes only through the server's L{RoomStream}
(L{chatsvc.content.roomstream}), which orders membership changes with the
room's events.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

H = TypeVar("H", bound=Hashable)
M = TypeVar("M")


class Room(Generic[H, M]):
    """
    One numbered room and its members (connection handle -> member), in
    order of entry.
    """

    __slots__ = ("capacity", "members", "number")

    def __init__(self, number: int, capacity: int) -> None:
        self.number = number
        self.capacity = capacity
        self.members: dict[H, M] = {}

    @property
    def full(self) -> bool:
        """
        Whether nobody else can enter.
        """
        return len(self.members) >= self.capacity

    def __repr__(self) -> str:
        return f"<Room {self.number}: {len(self.members)}/{self.capacity}>"


class Rooms(Generic[H, M]):
    """
    The numbered rooms of one server, C{start} to C{start + count - 1}.
    """

    def __init__(self, start: int, count: int, capacity: int) -> None:
        if count < 1 or capacity < 1:
            raise ValueError("a server needs at least one room of at least one user")
        self.start = start
        self._rooms = [Room[H, M](start + i, capacity) for i in range(count)]

    def __iter__(self) -> Iterator[Room[H, M]]:
        return iter(self._rooms)

    def get(self, number: int) -> Room[H, M] | None:
        """
        Return room C{number}, or L{None} if there is no such room.
        """
        index = number - self.start
        return self._rooms[index] if 0 <= index < len(self._rooms) else None
