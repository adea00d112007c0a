# -*- test-case-name: tests.test_rooms -*-
"""
The room stream: the one place that orders a room's events.

Everything a room tells its members (somebody entered, somebody left, a chat
message) is published to the room's stream, and members join and leave the
stream at a point in it: a member gets exactly the events published between
its entry and its leave, in publication order, and nothing else. The chat
rules only publish, enter and leave; how the events reach the members is the
stream's business. L{LocalRoomStream} does it within one process; a cluster
replaces it with one that carries each room's events through a shared
channel.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Generic, Protocol, TypeVar

from chatsvc.content.rooms import Room

H = TypeVar("H", bound=Hashable)
M = TypeVar("M")

#: Hands the same bytes to many connections.
Fanout = Callable[[Iterable[H], bytes], None]


class RoomStream(Protocol[H, M]):
    """
    Orders and delivers the events of a server's rooms.
    """

    def publish(self, room: Room[H, M], data: bytes) -> None:
        """
        Add encoded packets to C{room}'s stream: every member gets them at the
        latest at the next L{flush}, after everything published before.
        """

    def publish_all(self, room: Room[H, M], events: list[bytes]) -> None:
        """
        L{publish} each of C{events}, in order (the stream may keep the list).
        """

    def enter(self, room: Room[H, M], handle: H, member: M) -> None:
        """
        Make C{handle} a member of C{room}: it gets what is published from
        now on, nothing published before. The caller checked that there is
        room.
        """

    def leave(self, room: Room[H, M], handle: H) -> None:
        """
        End C{handle}'s membership of C{room}: it gets what was published
        until now, nothing published later.
        """

    def flush(self) -> None:
        """
        Deliver everything published so far (at the end of each reactor
        turn).
        """


class LocalRoomStream(Generic[H, M]):
    """
    The room stream of one process.

    What a room publishes during a reactor turn is kept, joined once at the
    end of the turn and handed to every member as the same bytes: the cost of
    an event does not grow with the room, only the hand-over does. A
    membership change first delivers what the room has pending to the members
    before the change.
    """

    def __init__(self, fanout: Fanout[H]) -> None:
        self._fanout = fanout
        #: Each room with events not yet delivered, and its events.
        self._pending: dict[Room[H, M], list[bytes]] = {}

    def publish(self, room: Room[H, M], data: bytes) -> None:
        pending = self._pending.get(room)
        if pending is None:
            self._pending[room] = [data]
        else:
            pending.append(data)

    def publish_all(self, room: Room[H, M], events: list[bytes]) -> None:
        pending = self._pending.get(room)
        if pending is None:
            self._pending[room] = events
        else:
            pending += events

    def enter(self, room: Room[H, M], handle: H, member: M) -> None:
        self._deliver(room)
        room.members[handle] = member

    def leave(self, room: Room[H, M], handle: H) -> None:
        self._deliver(room)
        del room.members[handle]

    def flush(self) -> None:
        pending = self._pending
        self._pending = {}
        fanout = self._fanout
        for room, events in pending.items():
            fanout(room.members, events[0] if len(events) == 1 else b"".join(events))

    def _deliver(self, room: Room[H, M]) -> None:
        events = self._pending.pop(room, None)
        if events is not None:
            self._fanout(
                room.members, events[0] if len(events) == 1 else b"".join(events)
            )
