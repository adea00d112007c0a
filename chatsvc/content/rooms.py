# -*- test-case-name: tests.test_chat -*-
"""
Rooms: membership and ordered fan-out.

What a room broadcasts during a reactor turn is kept in the room, joined once
at the end of the turn and handed to every member as the same bytes: the cost
of a notify does not grow with the room, only the hand-over does. Membership
changes flush the room first, so every member gets exactly the notifies
published while it was in the room, in publication order.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Generic, TypeVar

H = TypeVar("H", bound=Hashable)
M = TypeVar("M")


#: Hands the same bytes to many connections.
Fanout = Callable[[Iterable[H], bytes], None]


class Room(Generic[H, M]):
    """
    One numbered room: its members, in order of entry, and its unsent notifies.
    """

    __slots__ = ("capacity", "members", "number", "pending")

    def __init__(self, number: int, capacity: int) -> None:
        self.number = number
        self.capacity = capacity
        self.members: dict[H, M] = {}
        self.pending: list[bytes] = []

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

    def __init__(
        self, start: int, count: int, capacity: int, fanout: Fanout[H]
    ) -> None:
        if count < 1 or capacity < 1:
            raise ValueError("a server needs at least one room of at least one user")
        self.start = start
        self._fanout = fanout
        self._rooms = [Room[H, M](start + i, capacity) for i in range(count)]
        self._dirty: dict[Room[H, M], None] = {}

    def __iter__(self) -> Iterator[Room[H, M]]:
        return iter(self._rooms)

    def get(self, number: int) -> Room[H, M] | None:
        """
        Return room C{number}, or L{None} if there is no such room.
        """
        index = number - self.start
        return self._rooms[index] if 0 <= index < len(self._rooms) else None

    def enter(self, room: Room[H, M], handle: H, member: M) -> None:
        """
        Add a member; the caller checked that the room is not full.
        """
        self.flush_room(room)
        room.members[handle] = member

    def leave(self, room: Room[H, M], handle: H) -> None:
        """
        Remove a member.
        """
        self.flush_room(room)
        del room.members[handle]

    def publish(self, room: Room[H, M], data: bytes) -> None:
        """
        Send C{data} to every member, at the latest at the next L{flush}.
        """
        if not room.pending:
            self._dirty[room] = None
        room.pending.append(data)

    def send_now(self, room: Room[H, M], data: bytes, *, skip: H | None = None) -> None:
        """
        Send C{data} to every member (but C{skip}) after what is pending.
        """
        self.flush_room(room)
        recipients: Iterable[H] = room.members
        if skip is not None:
            recipients = [handle for handle in room.members if handle != skip]
        self._fanout(recipients, data)

    def flush_room(self, room: Room[H, M]) -> None:
        """
        Deliver what C{room} has pending.
        """
        pending = room.pending
        if pending:
            room.pending = []
            del self._dirty[room]
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            self._fanout(room.members, data)

    def flush(self) -> None:
        """
        Deliver what every room has pending (once per reactor turn).
        """
        dirty = self._dirty
        self._dirty = {}
        for room in dirty:
            pending = room.pending
            room.pending = []
            self._fanout(
                room.members, pending[0] if len(pending) == 1 else b"".join(pending)
            )
