"""
Tests for L{chatsvc.content.chat.ChatServer} with shared rooms (a cluster):
room entry and chat are requests answered later.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from chatsvc.content.chat import MAX_HELD, ChatConfig, ChatServer, State
from chatsvc.protocol import (
    ChatNotify,
    ChatRequest,
    EnterRoomRequest,
    LeaveRoomRequest,
    LoginRequest,
    PacketId,
    Response,
    Result,
    UserList,
    chat_notify,
)
from tests.test_chat import FakeOutbox

LOGIN = PacketId.LOGIN_RESPONSE
ENTER = PacketId.ROOM_ENTER_RESPONSE
LEAVE = PacketId.ROOM_LEAVE_RESPONSE
CHAT = PacketId.ROOM_CHAT_RESPONSE


class FakeSharedRooms:
    """
    Records what the chat rules ask of the cluster.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def enter(self, room: int, handle: str, unique_id: int, user_id: bytes) -> None:
        self.calls.append(("enter", room, handle, user_id))

    def leave(self, room: int, handle: str, unique_id: int) -> None:
        self.calls.append(("leave", room, handle))

    def cancel(self, handle: str) -> None:
        self.calls.append(("cancel", handle))

    def chat(self, room: int, handle: str, notify: bytes) -> None:
        self.calls.append(("chat", room, handle, notify))

    def flush(self) -> None:
        self.calls.append(("flush",))


class SharedRoomsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.outbox = FakeOutbox()
        self.shared = FakeSharedRooms()
        self.server: ChatServer[str] = ChatServer(
            self.outbox,
            ChatConfig(chat_rate=0),
            clock=lambda: 0.0,
            shared_rooms=self.shared,
        )
        self.outbox.server = self.server
        self.server.connect("a")
        self.server.handle("a", LoginRequest(b"alice", b"pw"))
        self.outbox.take("a")

    def test_entry_is_answered_by_the_cluster(self) -> None:
        self.server.handle("a", EnterRoomRequest(3))
        self.assertEqual(self.shared.calls, [("enter", 3, "a", b"alice")])
        self.assertEqual(self.outbox.take("a"), [])
        self.assertIs(self.server.clients["a"].state, State.ENTERING)
        self.server.entered("a", 3, [(7, b"bob")])
        self.assertEqual(
            self.outbox.take("a"), [Response(ENTER, 0), UserList(((7, b"bob"),))]
        )
        self.assertEqual(list(self.server.rooms.get(3).members), ["a"])  # type: ignore[union-attr]

    def test_entry_refused(self) -> None:
        for full, result in ((True, 54), (False, 42)):
            self.server.handle("a", EnterRoomRequest(3))
            self.server.entry_refused("a", 3, full)
            self.assertEqual(self.outbox.take("a"), [Response(ENTER, result)])
            self.assertIs(self.server.clients["a"].state, State.LOGIN)

    def test_requests_wait_for_the_entry(self) -> None:
        """
        What arrives while the entry is decided is applied after it, in order.
        """
        self.server.handle("a", EnterRoomRequest(3))
        self.server.handle("a", ChatRequest(b"hi"))
        self.server.handle("a", LeaveRoomRequest())
        self.server.handle("a", EnterRoomRequest(4))
        self.assertEqual(len(self.shared.calls), 1)
        self.server.entered("a", 3, [])
        self.assertEqual(
            self.shared.calls[1:],
            [
                ("chat", 3, "a", chat_notify(b"alice", b"hi")),
                ("leave", 3, "a"),
                ("enter", 4, "a", b"alice"),
            ],
        )
        self.assertEqual(
            self.outbox.take("a"),
            [Response(ENTER, 0), UserList(()), Response(LEAVE, 0)],
        )
        self.server.handle("a", ChatRequest(b"later"))
        self.server.entry_refused("a", 4, True)
        self.assertEqual(
            self.outbox.take("a"), [Response(ENTER, 54), Response(CHAT, 81)]
        )

    def test_held_requests_are_bounded(self) -> None:
        self.server.handle("a", EnterRoomRequest(3))
        for _ in range(MAX_HELD + 2):
            self.server.handle("a", ChatRequest(b"x"))
        self.assertEqual(self.outbox.take("a"), [Response(CHAT, 81)] * 2)

    def test_requests_wait_for_the_login(self) -> None:
        self.outbox.hold_logins = True
        self.server.connect("b")
        self.server.handle("b", LoginRequest(b"bob", b"pw"))
        self.server.handle("b", EnterRoomRequest(1))
        self.assertEqual(self.shared.calls, [])
        self.server.login_checked("b", True)
        self.assertEqual(self.shared.calls, [("enter", 1, "b", b"bob")])

    def test_login_taken_on_another_node(self) -> None:
        self.outbox.hold_logins = True
        self.server.connect("b")
        self.server.handle("b", LoginRequest(b"bob", b"pw"))
        self.server.login_checked("b", False, Result.LOGIN_USER_ALREADY)
        self.assertEqual(self.outbox.take("b"), [Response(LOGIN, 31)])
        self.assertNotIn(b"bob", self.server.presence)  # type: ignore[operator]

    def test_chat_answered_once_published(self) -> None:
        self.server.handle("a", EnterRoomRequest(3))
        self.server.entered("a", 3, [])
        self.outbox.take("a")
        self.server.handle("a", ChatRequest(b"one"))
        self.server.handle("a", ChatRequest(b"two"))
        self.assertEqual(self.outbox.take("a"), [])
        self.server.chats_answered(["a"], True)
        self.server.chats_answered(["a"], False)
        self.assertEqual(self.outbox.take("a"), [Response(CHAT, 0), Response(CHAT, 62)])
        self.assertNotIn(ChatNotify, map(type, self.outbox.received["a"]))
        self.server.end_of_turn()
        self.assertEqual(self.shared.calls[-1], ("flush",))

    def test_leave_and_disconnect(self) -> None:
        self.server.handle("a", EnterRoomRequest(3))
        self.server.entered("a", 3, [])
        self.outbox.take("a")
        self.server.handle("a", LeaveRoomRequest())
        self.assertEqual(self.shared.calls[-1], ("leave", 3, "a"))
        self.assertEqual(self.outbox.broadcasts, [])
        self.assertEqual(self.outbox.take("a"), [Response(LEAVE, 0)])
        self.server.handle("a", EnterRoomRequest(5))
        self.server.disconnect("a")
        self.assertEqual(self.shared.calls[-1], ("cancel", "a"))
        self.server.entered("a", 5, [])
        self.assertEqual(self.outbox.take("a"), [])
