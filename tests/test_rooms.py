"""
Tests for L{chatsvc.content.roomstream}: the order in which a room's members
get its events, on its own (no chat rules, no network).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from twisted.trial.unittest import SynchronousTestCase

from chatsvc.content.rooms import Room, Rooms
from chatsvc.content.roomstream import LocalRoomStream, RoomStream


class StreamTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.rooms: Rooms[str, None] = Rooms(1, 2, capacity=10)
        self.received: dict[str, bytes] = defaultdict(bytes)
        self.handovers = 0
        self.stream: RoomStream[str, None] = LocalRoomStream(self.fanout)

    def fanout(self, to: Iterable[str], data: bytes) -> None:
        self.handovers += 1
        for handle in to:
            self.received[handle] += data

    def room(self, number: int, *members: str) -> Room[str, None]:
        room = self.rooms.get(number)
        assert room is not None
        for handle in members:
            self.stream.enter(room, handle, None)
        return room

    def test_events_in_publication_order(self) -> None:
        """
        Members get a turn's events in the order published, in one hand-over
        for the room.
        """
        room = self.room(1, "x", "y")
        for event in (b"A", b"B", b"C"):
            self.stream.publish(room, event)
        self.stream.flush()
        self.assertEqual(self.received, {"x": b"ABC", "y": b"ABC"})
        self.assertEqual(self.handovers, 1)

    def test_several_events_at_once(self) -> None:
        """
        Events published together keep their place among those published
        one by one.
        """
        room = self.room(1, "x")
        self.stream.publish_all(room, [b"A", b"B"])
        self.stream.publish(room, b"C")
        self.stream.publish_all(room, [b"D", b"E"])
        self.stream.flush()
        self.stream.publish_all(self.room(2, "y"), [b"F"])
        self.stream.flush()
        self.assertEqual(self.received, {"x": b"ABCDE", "y": b"F"})

    def test_delivered_at_flush_once(self) -> None:
        room = self.room(1, "x")
        self.stream.publish(room, b"A")
        self.assertEqual(self.received, {})
        self.stream.flush()
        self.stream.flush()
        self.assertEqual(self.received, {"x": b"A"})

    def test_entering_mid_turn_gets_only_later_events(self) -> None:
        """
        A member entering gets exactly the events published after its entry;
        those before still reach only the members of that time, first.
        """
        room = self.room(1, "x")
        self.stream.publish(room, b"A")
        self.stream.enter(room, "y", None)
        self.stream.publish(room, b"B")
        self.stream.flush()
        self.assertEqual(self.received, {"x": b"AB", "y": b"B"})

    def test_leaving_mid_turn_gets_nothing_later(self) -> None:
        """
        A member leaving gets every event published before its leave and
        none after.
        """
        room = self.room(1, "x", "y")
        self.stream.publish(room, b"A")
        self.stream.leave(room, "y")
        self.stream.publish(room, b"B")
        self.stream.flush()
        self.assertEqual(self.received, {"x": b"AB", "y": b"A"})

    def test_enter_and_leave_in_one_turn(self) -> None:
        room = self.room(1, "x")
        self.stream.publish(room, b"A")
        self.stream.enter(room, "y", None)
        self.stream.publish(room, b"B")
        self.stream.leave(room, "y")
        self.stream.publish(room, b"C")
        self.stream.enter(room, "y", None)
        self.stream.publish(room, b"D")
        self.stream.flush()
        self.assertEqual(self.received, {"x": b"ABCD", "y": b"BD"})

    def test_rooms_are_separate_streams(self) -> None:
        """
        A room's events reach only its members, and a membership change in
        one room does not reorder another's.
        """
        one = self.room(1, "x")
        two = self.room(2, "z")
        self.stream.publish(one, b"A")
        self.stream.publish(two, b"1")
        self.stream.enter(two, "w", None)
        self.stream.publish(one, b"B")
        self.stream.publish(two, b"2")
        self.stream.flush()
        self.assertEqual(self.received, {"x": b"AB", "z": b"12", "w": b"2"})

    def test_membership_changes(self) -> None:
        room = self.room(1, "x", "y", "z")
        self.stream.leave(room, "y")
        self.assertEqual(list(room.members), ["x", "z"])
        self.assertEqual(repr(room), "<Room 1: 2/10>")


class RoomsTests(SynchronousTestCase):
    def test_numbering(self) -> None:
        rooms: Rooms[str, None] = Rooms(5, 3, capacity=2)
        self.assertEqual([room.number for room in rooms], [5, 6, 7])
        self.assertIsNone(rooms.get(4))
        self.assertIsNone(rooms.get(8))
        self.assertEqual(rooms.get(6).number, 6)  # type: ignore[union-attr]

    def test_full(self) -> None:
        room: Room[str, None] = Room(1, capacity=1)
        self.assertFalse(room.full)
        room.members["x"] = None
        self.assertTrue(room.full)

    def test_at_least_one_room(self) -> None:
        self.assertRaises(ValueError, Rooms, 0, 0, 1)
        self.assertRaises(ValueError, Rooms, 0, 1, 0)
