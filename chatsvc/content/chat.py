# -*- test-case-name: tests.test_chat -*-
"""
The chat rules (the tutorial's ChatServer_01 to _03), as plain Python.

L{ChatServer} is told of connections, requests and login results, and acts
only through what it is given: its L{Outbox} (output to connections, login
checks), its L{RoomStream} (every event of a room) and a clock. It never
touches a socket or a reactor, so every rule is testable by calling it.
Connections are opaque hashable handles chosen by the caller (the Twisted
shell passes its sessions).

Each connection moves through NONE -> LOGIN -> ROOM; a login in progress
(LOGGING_IN, while the back end checks the password) already holds its user id
and its place under C{max_users}, so two logins with one id cannot both win.
With L{SharedRooms} (a cluster), an entry in progress is ENTERING, and the
requests a user sends while its login or entry is being decided wait for it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar

from chatsvc.content.presence import LocalPresence, Presence
from chatsvc.content.rooms import Room, Rooms
from chatsvc.content.roomstream import LocalRoomStream, RoomStream
from chatsvc.content.shared import SharedRooms
from chatsvc.content.user_ids import user_id_problem
from chatsvc.protocol import (
    CHAT_MSG_FIELD,
    DEFAULT_MAX_PACKET_SIZE,
    ChatRequest,
    EnterRoomRequest,
    LeaveRoomRequest,
    LoginRequest,
    PacketId,
    Request,
    Result,
    chat_notify_prefix,
    leave_user_notify,
    new_user_notify,
    result_response,
    user_list_notifies,
)
from chatsvc.ratelimit import TokenBucket

H = TypeVar("H", bound=Hashable)
H_contra = TypeVar("H_contra", bound=Hashable, contravariant=True)


class Outbox(Protocol[H_contra]):
    """
    Everything L{ChatServer} asks of the world around it.
    """

    def send(self, to: H_contra, data: bytes) -> None:
        """
        Queue encoded packets for one connection.
        """

    def broadcast(self, to: Iterable[H_contra], data: bytes) -> None:
        """
        Queue the same encoded packets for many connections.
        """

    def check_login(self, client: H_contra, user_id: bytes, password: bytes) -> None:
        """
        Check the credentials and answer with L{ChatServer.login_checked}.
        """

    def login_refused(self, client: H_contra, user_id: bytes, result: Result) -> None:
        """
        A login was refused with C{result} before its credentials were checked.
        """


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """
    The chat rules' settings.

    @ivar chat_rate: chat messages per second a user may send on average;
        0 turns the limit off.
    @ivar chat_burst: how many chat messages a user may send at once.
    @ivar login_timeout: seconds a connection has, from connecting, to log
        in before it is closed; 0 turns the deadline off.
    """

    rooms: int = 10
    room_start: int = 0
    room_capacity: int = 4
    max_users: int = 10_000
    chat_rate: float = 20.0
    chat_burst: int = 40
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    login_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.rooms < 1:
            raise ValueError("rooms must be at least 1")
        if self.room_capacity < 1:
            raise ValueError("room_capacity must be at least 1")
        if self.max_users < 1:
            raise ValueError("max_users must be at least 1")
        if self.chat_rate < 0:
            raise ValueError("chat_rate must be 0 (off) or positive")
        if self.chat_burst < 1:
            raise ValueError("chat_burst must be at least 1")
        if self.max_packet_size < 64:
            raise ValueError("max_packet_size must be at least 64")
        if self.login_timeout < 0:
            raise ValueError("login_timeout must be 0 (off) or positive")


@dataclass(slots=True)
class ChatStats:
    """
    What the chat rules have done, for the metrics exporter.

    Accepted chats, most of what the rules count, are counted in two plain
    numbers (C{chats}, C{chat_notifies}); C{packets_out} and C{bytes_out}
    add them to the counts of everything else when read.

    @ivar logins: login results, by result code.
    @ivar chats: chat requests accepted, each answered with a
        ROOM_CHAT_RESPONSE of result 0.
    @ivar chat_notifies: ROOM_CHAT_NOTIFY packets, counted per recipient.
    """

    logins: Counter[int] = field(default_factory=Counter)
    chats: int = 0
    chat_notifies: int = 0
    _packets: Counter[int] = field(default_factory=Counter)
    _bytes: Counter[int] = field(default_factory=Counter)

    def sent(self, packet_id: int, size: int, recipients: int = 1) -> None:
        """
        Count C{recipients} packets of C{size} bytes.
        """
        self._packets[packet_id] += recipients
        self._bytes[packet_id] += size * recipients

    @property
    def packets_out(self) -> Counter[int]:
        """
        Packets sent, by packet id, counted per recipient.
        """
        return self._with_chats(self._packets, 1, 1)

    @property
    def bytes_out(self) -> Counter[int]:
        """
        Bytes of those packets, by packet id.
        """
        return self._with_chats(self._bytes, len(_CHAT_OK), _CHAT_NOTIFY_SIZE)

    def _with_chats(
        self, counts: Counter[int], response: int, notify: int
    ) -> Counter[int]:
        total = Counter(counts)
        if self.chats:
            total[PacketId.ROOM_CHAT_RESPONSE] += self.chats * response
        if self.chat_notifies:
            total[PacketId.ROOM_CHAT_NOTIFY] += self.chat_notifies * notify
        return total


class State(Enum):
    """
    Where a connection is in the login/room state machine.
    """

    NONE = "none"
    LOGGING_IN = "logging in"
    LOGIN = "logged in"
    ENTERING = "entering a room"
    ROOM = "in a room"


class User:
    """
    One connection as the chat rules see it (the tutorial's C{User}): its
    state and, once logged in, its user id, unique id and room.
    """

    __slots__ = (
        "bucket",
        "held",
        "notify_prefix",
        "room",
        "state",
        "unique_id",
        "user_id",
    )

    def __init__(self) -> None:
        self.state = State.NONE
        self.user_id = b""
        #: What each of this user's chat notifies starts with (once logged in).
        self.notify_prefix = b""
        self.unique_id = 0
        self.room: Room[Any, User] | None = None
        self.bucket: TokenBucket | None = None
        #: With shared rooms, the requests that arrived while the cluster
        #: decided a login or an entry (applied in order once it did).
        self.held: list[Request] | None = None

    def __repr__(self) -> str:
        return f"<User {self.user_id!r} {self.state.value}>"


#: Requests held per user while the cluster decides its login or entry;
#: past this many they are answered at once, as in the user's state then.
MAX_HELD = 64

#: The states of a logged-in user outside any room.
_LOGGED_IN = (State.LOGIN, State.ENTERING)

_LOGIN_OK = result_response(PacketId.LOGIN_RESPONSE, Result.NONE)
_ENTER_OK = result_response(PacketId.ROOM_ENTER_RESPONSE, Result.NONE)
_LEAVE_OK = result_response(PacketId.ROOM_LEAVE_RESPONSE, Result.NONE)
_CHAT_OK = result_response(PacketId.ROOM_CHAT_RESPONSE, Result.NONE)
_CHAT_NOTIFY_SIZE = len(chat_notify_prefix(b"")) + CHAT_MSG_FIELD


class ChatServer(Generic[H]):
    """
    The login, room and chat rules of one server.
    """

    def __init__(
        self,
        outbox: Outbox[H],
        config: ChatConfig | None = None,
        *,
        clock: Callable[[], float],
        presence: Presence | None = None,
        unique_ids: Iterator[int] | None = None,
        room_stream: RoomStream[H, User] | None = None,
        shared_rooms: SharedRooms[H] | None = None,
    ) -> None:
        self.config = config = config or ChatConfig()
        self._outbox = outbox
        self._clock = clock
        self.presence: Presence = presence if presence is not None else LocalPresence()
        self._unique_ids = unique_ids if unique_ids is not None else itertools.count(1)
        self.clients: dict[H, User] = {}
        self.users = 0
        self.stats = ChatStats()
        self.rooms: Rooms[H, User] = Rooms(
            config.room_start, config.rooms, config.room_capacity
        )
        self.room_stream: RoomStream[H, User] = (
            room_stream
            if room_stream is not None
            else LocalRoomStream(outbox.broadcast)
        )
        self.shared_rooms = shared_rooms

    def connect(self, handle: H) -> None:
        """
        A connection opened.
        """
        self.clients[handle] = User()

    def disconnect(self, handle: H) -> None:
        """
        A connection closed: its user leaves its room and is logged out.
        """
        client = self.clients.pop(handle, None)
        if client is None:
            return
        if client.room is not None:
            self._leave_room(handle, client, client.room)
        elif client.state is State.ENTERING and self.shared_rooms is not None:
            self.shared_rooms.cancel(handle)
        if client.state is not State.NONE:
            self._log_out(client)

    def handle(self, handle: H, request: Request) -> None:
        """
        Apply one client request.
        """
        if type(request) is ChatRequest:
            self.chat(handle, request.message)
            return
        client = self.clients.get(handle)
        if client is None:
            return
        held = client.held
        if held is not None and len(held) < MAX_HELD:
            held.append(request)
            return
        match request:
            case LoginRequest():
                self._login(handle, client, request)
            case EnterRoomRequest():
                self._enter(handle, client, request)
            case LeaveRoomRequest():
                self._leave(handle, client)

    def login_checked(
        self,
        handle: H,
        accepted: bool,
        refusal: Result = Result.LOGIN_USER_INVALID_PW,
    ) -> None:
        """
        The back end answered the login of C{handle} (C{refusal} is the
        result code of a refused one).
        """
        client = self.clients.get(handle)
        if client is None or client.state is not State.LOGGING_IN:
            return
        if accepted:
            client.state = State.LOGIN
            client.unique_id = next(self._unique_ids)
            client.notify_prefix = chat_notify_prefix(client.user_id)
            self.stats.logins[Result.NONE] += 1
            self._send(handle, PacketId.LOGIN_RESPONSE, _LOGIN_OK)
        else:
            self._log_out(client)
            self._reply(handle, PacketId.LOGIN_RESPONSE, refusal)
        self._apply_held(handle, client)

    def entered(
        self, handle: H, room_number: int, present: Sequence[tuple[int, bytes]]
    ) -> None:
        """
        The shared rooms let C{handle} into room C{room_number}, where
        C{present} (unique id, user id) were before it.
        """
        client = self.clients.get(handle)
        room = self.rooms.get(room_number)
        if client is None or client.state is not State.ENTERING or room is None:
            return
        room.members[handle] = client
        client.room = room
        client.state = State.ROOM
        self._send(handle, PacketId.ROOM_ENTER_RESPONSE, _ENTER_OK)
        for packet in user_list_notifies(present, self.config.max_packet_size):
            self._send(handle, PacketId.ROOM_USER_LIST_NTF, packet)
        self._apply_held(handle, client)

    def entry_refused(self, handle: H, room_number: int, full: bool) -> None:
        """
        The shared rooms did not let C{handle} in: the room is full (54), or
        they could not decide (42).
        """
        client = self.clients.get(handle)
        if client is None or client.state is not State.ENTERING:
            return
        client.state = State.LOGIN
        result = Result.ENTER_ROOM_FULL_USER if full else Result.NEW_ROOM_FAIL_ENTER
        self._reply(handle, PacketId.ROOM_ENTER_RESPONSE, result)
        self._apply_held(handle, client)

    def _apply_held(self, handle: H, client: User) -> None:
        held = client.held
        client.held = None
        for i, request in enumerate(held or ()):
            self.handle(handle, request)
            if client.held is not None:
                # Waiting again: the rest waits too.
                client.held[:0] = held[i + 1 :]
                return

    def chats_answered(self, handles: Iterable[H], published: bool) -> None:
        """
        The shared rooms published the chats of C{handles} (one per chat), or
        could not (62: nobody got them).
        """
        if published:
            for handle in handles:
                self._send(handle, PacketId.ROOM_CHAT_RESPONSE, _CHAT_OK)
        else:
            for handle in handles:
                self._reply(handle, PacketId.ROOM_CHAT_RESPONSE, Result.ROOM_NOT_USED)

    def end_of_turn(self) -> None:
        """
        Deliver the room events published during this reactor turn.
        """
        self.room_stream.flush()
        if self.shared_rooms is not None:
            self.shared_rooms.flush()

    def _send(self, handle: H, packet_id: PacketId, data: bytes) -> None:
        self.stats.sent(packet_id, len(data))
        self._outbox.send(handle, data)

    def _reply(self, handle: H, packet_id: PacketId, result: Result) -> None:
        if packet_id == PacketId.LOGIN_RESPONSE:
            self.stats.logins[result] += 1
        self._send(handle, packet_id, result_response(packet_id, result))

    def _tell_room(self, room: Room[H, User], packet_id: PacketId, data: bytes) -> None:
        self.stats.sent(packet_id, len(data), len(room.members))
        self.room_stream.publish(room, data)

    def _log_out(self, client: User) -> None:
        self.presence.release(client.user_id)
        self.users -= 1
        client.state = State.NONE
        client.user_id = b""
        client.notify_prefix = b""
        client.unique_id = 0

    def _login(self, handle: H, client: User, request: LoginRequest) -> None:
        user_id = request.user_id
        if client.state is not State.NONE:
            result = Result.LOGIN_USER_ALREADY
        elif user_id_problem(user_id) is not None:
            result = Result.LOGIN_USER_INVALID_PW
        elif self.users >= self.config.max_users:
            result = Result.LOGIN_USER_USED_ALL_OBJ
        elif not self.presence.claim(user_id):
            result = Result.LOGIN_USER_ALREADY
        else:
            self.users += 1
            client.state = State.LOGGING_IN
            client.user_id = user_id
            if self.shared_rooms is not None:
                client.held = []
            self._outbox.check_login(handle, user_id, request.password)
            return
        self._outbox.login_refused(handle, user_id, result)
        self._reply(handle, PacketId.LOGIN_RESPONSE, result)

    def _enter(self, handle: H, client: User, request: EnterRoomRequest) -> None:
        room = self.rooms.get(request.room_number)
        if client.state is State.ROOM or client.state is State.ENTERING:
            result = Result.ENTER_ROOM_INVALID_USER_STATUS
        elif client.state is not State.LOGIN:
            result = Result.ENTER_ROOM_NOT_FINDE_USER
        elif room is None:
            result = Result.ROOM_INVALID_INDEX
        elif self.shared_rooms is not None:
            client.state = State.ENTERING
            client.held = []
            self.shared_rooms.enter(
                room.number, handle, client.unique_id, client.user_id
            )
            return
        elif room.full:
            result = Result.ENTER_ROOM_FULL_USER
        else:
            present = [(c.unique_id, c.user_id) for c in room.members.values()]
            notify = new_user_notify(client.unique_id, client.user_id)
            self._tell_room(room, PacketId.ROOM_NEW_USER_NTF, notify)
            self.room_stream.enter(room, handle, client)
            client.room = room
            client.state = State.ROOM
            self._send(handle, PacketId.ROOM_ENTER_RESPONSE, _ENTER_OK)
            for packet in user_list_notifies(present, self.config.max_packet_size):
                self._send(handle, PacketId.ROOM_USER_LIST_NTF, packet)
            return
        self._reply(handle, PacketId.ROOM_ENTER_RESPONSE, result)

    def _leave(self, handle: H, client: User) -> None:
        if client.room is not None:
            self._leave_room(handle, client, client.room)
            self._send(handle, PacketId.ROOM_LEAVE_RESPONSE, _LEAVE_OK)
            return
        result = (
            Result.ROOM_INVALID_INDEX
            if client.state in _LOGGED_IN
            else Result.ENTER_ROOM_NOT_FINDE_USER
        )
        self._reply(handle, PacketId.ROOM_LEAVE_RESPONSE, result)

    def _leave_room(self, handle: H, client: User, room: Room[H, User]) -> None:
        client.room = None
        client.state = State.LOGIN
        if self.shared_rooms is not None:
            del room.members[handle]
            self.shared_rooms.leave(room.number, handle, client.unique_id)
            return
        self.room_stream.leave(room, handle)
        self._tell_room(
            room, PacketId.ROOM_LEAVE_USER_NTF, leave_user_notify(client.unique_id)
        )

    def chat(self, handle: H, message: bytes) -> None:
        """
        Apply a ROOM_CHAT_REQUEST carrying C{message}: what L{handle} does
        with a L{ChatRequest}, without making one.
        """
        self.chats(handle, [message])

    def chats(self, handle: H, messages: list[bytes]) -> None:
        """
        Apply ROOM_CHAT_REQUESTs carrying C{messages}, in order, as L{chat}
        does one after the other: the answers and notifies are the same, and
        a member in a room of this process, the most frequent case, has them
        all answered and published at once.
        """
        client = self.clients.get(handle)
        if client is None:
            return
        room = client.room
        if (
            room is None
            or client.held is not None
            or self.config.chat_rate
            or self.shared_rooms is not None
        ):
            for message in messages:
                self._chat(handle, client, message)
            return
        self._accept_chats(handle, client, room, messages)

    def _accept_chats(
        self, handle: H, client: User, room: Room[H, User], messages: list[bytes]
    ) -> None:
        """
        Answer C{messages} with 0 and publish their notifies in C{room}.
        """
        count = len(messages)
        stats = self.stats
        stats.chats += count
        self._outbox.send(handle, _CHAT_OK * count)
        stats.chat_notifies += count * len(room.members)
        prefix = client.notify_prefix
        self.room_stream.publish_all(
            room,
            [prefix + message.ljust(CHAT_MSG_FIELD, b"\0") for message in messages],
        )

    def _chat(self, handle: H, client: User, message: bytes) -> None:
        held = client.held
        if held is not None and len(held) < MAX_HELD:
            held.append(ChatRequest(message))
            return
        room = client.room
        if room is None:
            result = (
                Result.CHAT_ROOM_INVALID_ROOM_NUMBER
                if client.state in _LOGGED_IN
                else Result.ENTER_ROOM_NOT_FINDE_USER
            )
        elif self.config.chat_rate and not self._within_rate(client):
            result = Result.ROOM_TOO_MANY_PACKET
        elif self.shared_rooms is not None:
            notify = client.notify_prefix + message.ljust(CHAT_MSG_FIELD, b"\0")
            self.shared_rooms.chat(room.number, handle, notify)
            return
        else:
            self._accept_chats(handle, client, room, [message])
            return
        self._reply(handle, PacketId.ROOM_CHAT_RESPONSE, result)

    def _within_rate(self, client: User) -> bool:
        config = self.config
        now = self._clock()
        if client.bucket is None:
            client.bucket = TokenBucket(config.chat_rate, config.chat_burst, now)
        return client.bucket.allow(now)
