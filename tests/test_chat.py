"""
Tests for L{chatsvc.content.chat}: the login/room/chat state machine, driven
without a reactor or a socket.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from twisted.trial.unittest import SynchronousTestCase

from chatsvc.content.chat import ChatConfig, ChatServer, State
from chatsvc.protocol import (
    ChatNotify,
    ChatRequest,
    EnterRoomRequest,
    Event,
    LeaveRoomRequest,
    LoginRequest,
    NewUser,
    PacketDecoder,
    PacketId,
    Response,
    Result,
    UserLeft,
    UserList,
    parse_event,
)

LOGIN = PacketId.LOGIN_RESPONSE
ENTER = PacketId.ROOM_ENTER_RESPONSE
LEAVE = PacketId.ROOM_LEAVE_RESPONSE
CHAT = PacketId.ROOM_CHAT_RESPONSE


class FakeOutbox:
    """
    Decodes what the chat server sends, per connection; answers logins
    itself unless told to hold them.
    """

    def __init__(self) -> None:
        self.server: ChatServer[str]
        self.received: dict[str, list[Event]] = defaultdict(list)
        self.broadcasts: list[tuple[list[str], bytes]] = []
        self.pending_logins: list[tuple[str, bytes, bytes]] = []
        self.hold_logins = False
        self.passwords: dict[bytes, bytes] | None = None
        self.refused: list[tuple[str, bytes, Result]] = []

    def send(self, to: str, data: bytes) -> None:
        decoder = PacketDecoder()
        decoder.feed(data)
        while (packet := decoder.next_packet()) is not None:
            self.received[to].append(parse_event(packet))
        self.assertWhole(decoder)

    def assertWhole(self, decoder: PacketDecoder) -> None:
        assert decoder.buffered == 0, "a partial packet was sent"

    def broadcast(self, to: Iterable[str], data: bytes) -> None:
        recipients = list(to)
        self.broadcasts.append((recipients, data))
        for handle in recipients:
            self.send(handle, data)

    def check_login(self, client: str, user_id: bytes, password: bytes) -> None:
        if self.hold_logins:
            self.pending_logins.append((client, user_id, password))
            return
        accepted = self.passwords is None or self.passwords.get(user_id) == password
        self.server.login_checked(client, accepted)

    def login_refused(self, client: str, user_id: bytes, result: Result) -> None:
        self.refused.append((client, user_id, result))

    def take(self, handle: str) -> list[Event]:
        events = self.received.pop(handle, [])
        return events


class ChatTestCase(SynchronousTestCase):
    def make_server(self, **config: object) -> None:
        self.now = 1000.0
        self.outbox = FakeOutbox()
        self.server: ChatServer[str] = ChatServer(
            self.outbox,
            ChatConfig(**config),
            clock=lambda: self.now,  # type: ignore[arg-type]
        )
        self.outbox.server = self.server

    def setUp(self) -> None:
        self.make_server(chat_rate=0)

    def connect(self, *handles: str) -> None:
        for handle in handles:
            self.server.connect(handle)

    def login(
        self, handle: str, user: str | None = None, password: bytes = b"pw"
    ) -> list[Event]:
        self.server.handle(
            handle, LoginRequest((handle if user is None else user).encode(), password)
        )
        self.server.end_of_turn()
        return self.outbox.take(handle)

    def enter(self, handle: str, room: int) -> list[Event]:
        self.server.handle(handle, EnterRoomRequest(room))
        self.server.end_of_turn()
        return self.outbox.take(handle)

    def leave(self, handle: str) -> list[Event]:
        self.server.handle(handle, LeaveRoomRequest())
        self.server.end_of_turn()
        return self.outbox.take(handle)

    def chat(
        self, handle: str, message: bytes, *, end_turn: bool = True
    ) -> list[Event]:
        self.server.handle(handle, ChatRequest(message))
        if end_turn:
            self.server.end_of_turn()
        return self.outbox.take(handle)

    def in_room(self, room: int, *handles: str) -> None:
        for handle in handles:
            self.connect(handle)
            self.login(handle)
            self.enter(handle, room)
        for handle in handles:
            self.outbox.take(handle)


class LoginTests(ChatTestCase):
    def test_login(self) -> None:
        self.connect("a")
        self.assertEqual(self.login("a"), [Response(LOGIN, 0)])
        self.assertIs(self.server.clients["a"].state, State.LOGIN)
        self.assertEqual(self.server.users, 1)

    def test_duplicate_user_id(self) -> None:
        self.connect("a", "b")
        self.login("a", "alice")
        self.assertEqual(self.login("b", "alice"), [Response(LOGIN, 31)])
        self.assertIs(self.server.clients["b"].state, State.NONE)
        self.assertEqual(
            self.outbox.refused, [("b", b"alice", Result.LOGIN_USER_ALREADY)]
        )

    def test_second_login_on_connection(self) -> None:
        self.connect("a")
        self.login("a", "alice")
        self.assertEqual(self.login("a", "other"), [Response(LOGIN, 31)])
        self.assertEqual(self.server.clients["a"].user_id, b"alice")
        self.assertEqual(self.server.users, 1)

    def test_login_while_in_room(self) -> None:
        self.in_room(0, "a")
        self.assertEqual(self.login("a", "other"), [Response(LOGIN, 31)])
        self.assertIs(self.server.clients["a"].state, State.ROOM)

    def test_max_users(self) -> None:
        self.make_server(max_users=2)
        self.connect("a", "b", "c")
        self.login("a")
        self.login("b")
        self.assertEqual(self.login("c"), [Response(LOGIN, 32)])
        self.assertEqual(
            [result for _, _, result in self.outbox.refused],
            [Result.LOGIN_USER_USED_ALL_OBJ],
        )
        self.server.disconnect("a")
        self.assertEqual(self.login("c"), [Response(LOGIN, 0)])

    def test_empty_user_id(self) -> None:
        self.connect("a")
        self.assertEqual(self.login("a", ""), [Response(LOGIN, 33)])
        self.assertEqual(self.server.users, 0)

    def test_spoofing_user_ids_refused_before_the_check(self) -> None:
        """
        Ids that would show as something else (see L{user_id_problem}) get 33
        without reaching the login back end.
        """
        self.outbox.hold_logins = True
        self.connect("a")
        for user_id in (
            b"\xffadmin",
            b" " * 32,
            b"x" * 33,
            "admin\u200b".encode(),
            "txt.\u202eexe.pdf".encode(),
            "line\u2028two".encode(),
            b"\x1b[2Jadmin",
        ):
            self.server.handle("a", LoginRequest(user_id, b"pw"))
            self.server.end_of_turn()
            self.assertEqual(self.outbox.take("a"), [Response(LOGIN, 33)], user_id)
        self.assertEqual(self.outbox.pending_logins, [])
        self.assertEqual(self.server.users, 0)
        self.assertEqual(self.server.stats.logins, {33: 7})
        self.assertEqual(self.login("a", "관리자"), [])
        self.assertEqual(self.outbox.pending_logins, [("a", "관리자".encode(), b"pw")])

    def test_wrong_password(self) -> None:
        self.outbox.passwords = {b"alice": b"secret"}
        self.connect("a")
        self.assertEqual(self.login("a", "alice", b"nope"), [Response(LOGIN, 33)])
        self.assertEqual(self.login("a", "bob", b"secret"), [Response(LOGIN, 33)])
        self.assertEqual(self.server.users, 0)
        self.assertNotIn(b"alice", self.server.presence)  # type: ignore[operator]
        self.assertEqual(self.login("a", "alice", b"secret"), [Response(LOGIN, 0)])

    def test_ids_compared_as_bytes(self) -> None:
        self.connect("a", "b")
        self.login("a", "Alice")
        self.assertEqual(self.login("b", "alice"), [Response(LOGIN, 0)])

    def test_disconnect_logs_out(self) -> None:
        self.connect("a", "b")
        self.login("a", "alice")
        self.server.disconnect("a")
        self.assertEqual(self.login("b", "alice"), [Response(LOGIN, 0)])
        self.assertEqual(self.server.users, 1)

    def test_pending_login_holds_the_id(self) -> None:
        """
        While the back end checks a login, the same id cannot log in elsewhere.
        """
        self.outbox.hold_logins = True
        self.connect("a", "b")
        self.assertEqual(self.login("a", "alice"), [])
        self.assertEqual(self.login("b", "alice"), [Response(LOGIN, 31)])
        self.assertEqual(self.login("a", "alice"), [Response(LOGIN, 31)])
        self.server.login_checked("a", True)
        self.assertEqual(self.outbox.take("a"), [Response(LOGIN, 0)])

    def test_room_requests_while_login_pending(self) -> None:
        self.outbox.hold_logins = True
        self.connect("a")
        self.login("a")
        self.assertEqual(self.enter("a", 0), [Response(ENTER, 51)])
        self.assertEqual(self.leave("a"), [Response(LEAVE, 51)])
        self.assertEqual(self.chat("a", b"x"), [Response(CHAT, 51)])

    def test_disconnect_while_login_pending(self) -> None:
        """
        A client that leaves during its login check leaves no user behind.
        """
        self.outbox.hold_logins = True
        self.connect("a")
        self.login("a", "alice")
        self.server.disconnect("a")
        self.server.login_checked("a", True)
        self.assertEqual(self.server.users, 0)
        self.assertEqual(self.outbox.take("a"), [])
        self.assertNotIn(b"alice", self.server.presence)  # type: ignore[operator]
        self.assertNotIn("a", self.server.clients)

    def test_unique_ids_never_reused(self) -> None:
        seen = set()
        for i in range(5):
            handle = f"c{i}"
            self.connect(handle)
            self.login(handle, "same")
            seen.add(self.server.clients[handle].unique_id)
            self.server.disconnect(handle)
        self.assertEqual(len(seen), 5)


class EnterTests(ChatTestCase):
    def test_enter_empty_room(self) -> None:
        self.connect("a")
        self.login("a")
        self.assertEqual(self.enter("a", 3), [Response(ENTER, 0), UserList(())])
        self.assertIs(self.server.clients["a"].state, State.ROOM)

    def test_enter_gets_user_list_and_others_get_new_user(self) -> None:
        self.in_room(2, "a", "b")
        self.connect("c")
        self.login("c")
        events = self.enter("c", 2)
        ids = {h: self.server.clients[h].unique_id for h in "abc"}
        self.assertEqual(
            events,
            [Response(ENTER, 0), UserList(((ids["a"], b"a"), (ids["b"], b"b")))],
        )
        self.assertEqual(self.outbox.take("a"), [NewUser(ids["c"], b"c")])
        self.assertEqual(self.outbox.take("b"), [NewUser(ids["c"], b"c")])

    def test_user_list_split_at_1024_bytes(self) -> None:
        self.make_server(room_capacity=60, chat_rate=0)
        names = [f"user{i:02d}".ljust(32, "x") for i in range(59)]
        for i, name in enumerate(names):
            handle = f"h{i}"
            self.connect(handle)
            self.login(handle, name)
            self.enter(handle, 0)
        self.connect("last")
        self.login("last")
        self.server.handle("last", EnterRoomRequest(0))
        events = self.outbox.take("last")
        lists = [e for e in events if isinstance(e, UserList)]
        self.assertGreater(len(lists), 1)
        self.assertEqual(
            [u[1] for lst in lists for u in lst.users], [n.encode() for n in names]
        )
        for packet in self._raw_user_lists("last"):
            self.assertLessEqual(len(packet), 1024)

    def _raw_user_lists(self, handle: str) -> list[bytes]:
        from chatsvc.protocol import user_list_notifies

        members = [
            (c.unique_id, c.user_id)
            for c in self.server.rooms.get(0).members.values()  # type: ignore[union-attr]
        ]
        return list(user_list_notifies(members))

    def test_full_room(self) -> None:
        self.in_room(1, "a", "b", "c", "d")
        self.connect("e")
        self.login("e")
        self.assertEqual(self.enter("e", 1), [Response(ENTER, 54)])
        self.assertIs(self.server.clients["e"].state, State.LOGIN)
        self.assertEqual(self.outbox.take("a"), [])

    def test_out_of_range(self) -> None:
        self.connect("a")
        self.login("a")
        for room in (-1, 10, 2**31 - 1):
            self.assertEqual(self.enter("a", room), [Response(ENTER, 61)])

    def test_room_start(self) -> None:
        self.make_server(rooms=3, room_start=100)
        self.connect("a")
        self.login("a")
        self.assertEqual(self.enter("a", 0), [Response(ENTER, 61)])
        self.assertEqual(self.enter("a", 103), [Response(ENTER, 61)])
        self.assertEqual(self.enter("a", 102), [Response(ENTER, 0), UserList(())])

    def test_already_in_room(self) -> None:
        self.in_room(1, "a")
        self.assertEqual(self.enter("a", 2), [Response(ENTER, 52)])
        self.assertIs(self.server.clients["a"].room, self.server.rooms.get(1))

    def test_not_logged_in(self) -> None:
        self.connect("a")
        self.assertEqual(self.enter("a", 1), [Response(ENTER, 51)])


class LeaveTests(ChatTestCase):
    def test_leave(self) -> None:
        self.in_room(1, "a", "b")
        uid = self.server.clients["a"].unique_id
        self.assertEqual(self.leave("a"), [Response(LEAVE, 0)])
        self.assertEqual(self.outbox.take("b"), [UserLeft(uid)])
        self.assertIs(self.server.clients["a"].state, State.LOGIN)
        self.assertEqual(list(self.server.rooms.get(1).members), ["b"])  # type: ignore[union-attr]

    def test_leave_frees_a_place(self) -> None:
        self.in_room(1, "a", "b", "c", "d")
        self.leave("a")
        self.connect("e")
        self.login("e")
        self.assertEqual(self.enter("e", 1)[0], Response(ENTER, 0))

    def test_leave_outside_room(self) -> None:
        self.connect("a")
        self.login("a")
        self.assertEqual(self.leave("a"), [Response(LEAVE, 61)])

    def test_leave_not_logged_in(self) -> None:
        self.connect("a")
        self.assertEqual(self.leave("a"), [Response(LEAVE, 51)])

    def test_disconnect_notifies_without_response(self) -> None:
        self.in_room(1, "a", "b")
        uid = self.server.clients["a"].unique_id
        self.server.disconnect("a")
        self.server.end_of_turn()
        self.assertEqual(self.outbox.take("a"), [])
        self.assertEqual(self.outbox.take("b"), [UserLeft(uid)])
        self.assertEqual(self.server.users, 1)


class ChatTests(ChatTestCase):
    def test_chat_reaches_everyone_sender_last_after_response(self) -> None:
        self.in_room(1, "a", "b", "c")
        self.in_room(2, "z")
        self.assertEqual(
            self.chat("a", b"hello"), [Response(CHAT, 0), ChatNotify(b"a", b"hello")]
        )
        self.assertEqual(self.outbox.take("b"), [ChatNotify(b"a", b"hello")])
        self.assertEqual(self.outbox.take("c"), [ChatNotify(b"a", b"hello")])
        self.assertEqual(self.outbox.take("z"), [])

    def test_not_in_room(self) -> None:
        self.connect("a")
        self.login("a")
        self.assertEqual(self.chat("a", b"x"), [Response(CHAT, 81)])

    def test_not_logged_in(self) -> None:
        self.connect("a")
        self.assertEqual(self.chat("a", b"x"), [Response(CHAT, 51)])

    def test_run_of_chats_as_one_after_the_other(self) -> None:
        """
        L{ChatServer.chats} answers and publishes a run of messages as
        L{ChatServer.chat} would one by one, in or out of a room.
        """
        self.in_room(1, "a", "b")
        self.server.chats("a", [b"1", b"2", b"3"])
        self.server.end_of_turn()
        notifies = [ChatNotify(b"a", m) for m in (b"1", b"2", b"3")]
        self.assertEqual(self.outbox.take("a"), [Response(CHAT, 0)] * 3 + notifies)
        self.assertEqual(self.outbox.take("b"), notifies)
        self.assertEqual(self.server.stats.chats, 3)
        self.assertEqual(self.server.stats.chat_notifies, 6)
        self.connect("c")
        self.login("c")
        self.server.chats("c", [b"x", b"y"])
        self.assertEqual(self.outbox.take("c"), [Response(CHAT, 81)] * 2)

    def test_run_of_chats_rate_limited_one_by_one(self) -> None:
        """
        With a chat rate, each message of a run takes its own token: the
        messages past the burst get 63.
        """
        self.make_server(chat_rate=1, chat_burst=2)
        self.in_room(1, "a")
        self.server.chats("a", [b"1", b"2", b"3"])
        self.server.end_of_turn()
        self.assertEqual(
            self.outbox.take("a"),
            [
                Response(CHAT, 0),
                Response(CHAT, 0),
                Response(CHAT, 63),
                ChatNotify(b"a", b"1"),
                ChatNotify(b"a", b"2"),
            ],
        )

    def test_notify_encoded_once_per_room(self) -> None:
        """
        A turn's notifies for a room are joined once and the same bytes go to
        every member.
        """
        self.in_room(1, "a", "b", "c", "d")
        self.outbox.broadcasts.clear()
        self.chat("a", b"1", end_turn=False)
        self.chat("b", b"2", end_turn=False)
        self.server.end_of_turn()
        self.assertEqual(len(self.outbox.broadcasts), 1)
        recipients, data = self.outbox.broadcasts[0]
        self.assertEqual(recipients, ["a", "b", "c", "d"])
        self.assertEqual(len(data), 2 * 295)

    def test_order_is_acceptance_order(self) -> None:
        self.in_room(1, "a", "b")
        for i in range(10):
            self.server.handle("ab"[i % 2], ChatRequest(b"%d" % i))
            if i % 3 == 0:
                self.server.end_of_turn()
        self.server.end_of_turn()
        expected = [ChatNotify(b"ab"[i % 2 : i % 2 + 1], b"%d" % i) for i in range(10)]
        for handle in "ab":
            notifies = [
                e for e in self.outbox.take(handle) if isinstance(e, ChatNotify)
            ]
            self.assertEqual(notifies, expected)

    def test_leaver_gets_what_was_sent_before_leaving(self) -> None:
        self.in_room(1, "a", "b")
        self.chat("a", b"before", end_turn=False)
        events = self.leave("b")
        self.assertEqual(events, [ChatNotify(b"a", b"before"), Response(LEAVE, 0)])
        self.chat("a", b"after")
        self.assertEqual(self.outbox.take("b"), [])

    def test_newcomer_gets_only_what_follows(self) -> None:
        self.in_room(1, "a")
        self.connect("b")
        self.login("b")
        self.server.handle("a", ChatRequest(b"before"))
        self.server.handle("b", EnterRoomRequest(1))
        self.server.handle("a", ChatRequest(b"after"))
        self.server.end_of_turn()
        notifies = [e for e in self.outbox.take("b") if isinstance(e, ChatNotify)]
        self.assertEqual(notifies, [ChatNotify(b"a", b"after")])
        a_events = self.outbox.take("a")
        self.assertEqual(
            [e for e in a_events if not isinstance(e, Response)],
            [
                ChatNotify(b"a", b"before"),
                NewUser(self.server.clients["b"].unique_id, b"b"),
                ChatNotify(b"a", b"after"),
            ],
        )

    def test_disconnected_member_gets_nothing_more(self) -> None:
        self.in_room(1, "a", "b")
        self.chat("a", b"1", end_turn=False)
        self.server.disconnect("b")
        self.server.end_of_turn()
        self.assertEqual(self.outbox.take("b"), [ChatNotify(b"a", b"1")])
        self.chat("a", b"2")
        self.assertEqual(self.outbox.take("b"), [])

    def test_rate_limit(self) -> None:
        self.make_server(chat_rate=2, chat_burst=3)
        self.in_room(1, "a", "b")
        results = [self.chat("a", b"m")[0] for _ in range(4)]
        self.assertEqual(results, [Response(CHAT, 0)] * 3 + [Response(CHAT, 63)])
        self.assertEqual(len(self.outbox.take("b")), 3)
        self.now += 0.5
        self.assertEqual(self.chat("a", b"m")[0], Response(CHAT, 0))
        self.assertEqual(self.chat("a", b"m")[0], Response(CHAT, 63))

    def test_rate_limit_is_per_user(self) -> None:
        self.make_server(chat_rate=1, chat_burst=1)
        self.in_room(1, "a", "b")
        self.assertEqual(self.chat("a", b"m")[0], Response(CHAT, 0))
        self.outbox.take("b")
        self.assertEqual(self.chat("b", b"m")[0], Response(CHAT, 0))


class ConfigTests(SynchronousTestCase):
    def test_invalid(self) -> None:
        for bad in (
            {"rooms": 0},
            {"room_capacity": 0},
            {"max_users": 0},
            {"chat_rate": -1},
            {"chat_burst": 0},
            {"login_timeout": -1},
        ):
            self.assertRaises(ValueError, ChatConfig, **bad)  # type: ignore[arg-type]
