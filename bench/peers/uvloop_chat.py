"""
A chat server on uvloop that speaks chatsvc's protocol: the peer of
``twistd chatsvc`` in ``bench/chat.py``.

It does what chatsvc's chat stage does, minus Twisted, and as a competent
asyncio server would: open login (any non-empty user id, one login per id),
numbered rooms with a capacity, enter/leave/chat with the same responses and
result codes, and the same notifies (user list on enter, with a count of 0 in
an empty room, and new-user to the others; leave notify on leave or
disconnect; chat notify to every member, sender included, after the sender's
chat response). It splits the stream into packets by their 5-byte
little-endian header, ignores unknown packet ids, and drops a connection
whose length field is outside 5..1024 or whose body has the wrong length.
There is no chat rate limit: it is chatsvc's peer at ``--chat-rate 0``.
``tests/test_uvloop_peer.py`` plays one conversation against both servers.

Writes are coalesced per client per loop pass: responses are queued on the
client; chat notifies are queued on their room, joined once per room and pass,
and the same bytes object is queued on every member; one ``call_soon``
callback per pass then writes each client's queue with one ``transport.write``.
Membership changes deliver what the room has queued first, so every member
gets exactly the messages published while it was in, in order. A client whose
transport holds more than ``--send-limit`` unsent bytes is cut off as a slow
consumer, and reading pauses while its transport asks writers to pause (as in
chatsvc).

    python bench/peers/uvloop_chat.py --port 11021 [--rooms 10] [--room-capacity 4]
        [--asyncio]   # plain asyncio instead of uvloop
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import struct
import sys
from typing import Final

HEADER: Final = struct.Struct("<HHB")
LENGTH_ID: Final = struct.Struct("<HH")
HEADER_SIZE: Final = 5
MAX_PACKET: Final = 1024
LOGIN_REQUEST, LOGIN_RESPONSE = 201, 202
ENTER_REQUEST, ENTER_RESPONSE = 206, 207
NEW_USER_NTF, USER_LIST_NTF = 208, 209
LEAVE_REQUEST, LEAVE_RESPONSE, LEAVE_USER_NTF = 215, 216, 217
CHAT_REQUEST, CHAT_RESPONSE, CHAT_NOTIFY = 221, 222, 223
ID_FIELD: Final = 33
MSG_FIELD: Final = 257
USER_ENTRY: Final = struct.Struct("<qb")
ROOM_NUMBER: Final = struct.Struct("<i")
UNIQUE_ID: Final = struct.Struct("<q")
# Result codes (docs/protocol.md)
OK, ALREADY, FULL_SERVER, INVALID_PW = 0, 31, 32, 33
NOT_LOGGED_IN, ALREADY_IN_ROOM, ROOM_FULL = 51, 52, 54
INVALID_ROOM, CHAT_NO_ROOM = 61, 81


def packet(packet_id: int, body: bytes = b"") -> bytes:
    return HEADER.pack(HEADER_SIZE + len(body), packet_id, 0) + body


def result(packet_id: int, code: int) -> bytes:
    fmt = "<H" if packet_id == LOGIN_RESPONSE else "<h"
    return packet(packet_id, struct.pack(fmt, code))


def strip(field: bytes) -> bytes:
    end = field.find(b"\0")
    return field if end < 0 else field[:end]


_RESULTS = {
    (packet_id, code): result(packet_id, code)
    for packet_id in (LOGIN_RESPONSE, ENTER_RESPONSE, LEAVE_RESPONSE, CHAT_RESPONSE)
    for code in (OK, ALREADY, FULL_SERVER, INVALID_PW, NOT_LOGGED_IN,
                 ALREADY_IN_ROOM, ROOM_FULL, INVALID_ROOM, CHAT_NO_ROOM)
}  # fmt: skip
CHAT_OK: Final = _RESULTS[(CHAT_RESPONSE, OK)]


class Room:
    __slots__ = ("capacity", "members", "number", "pending")

    def __init__(self, number: int, capacity: int) -> None:
        self.number = number
        self.capacity = capacity
        self.members: dict[Client, None] = {}
        self.pending: list[bytes] = []


class Server:
    """
    Users, rooms and the once-per-pass flush.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.loop = asyncio.get_running_loop()
        self.rooms = {
            args.room_start + i: Room(args.room_start + i, args.room_capacity)
            for i in range(args.rooms)
        }
        self.max_users = args.max_users
        self.send_limit = args.send_limit
        self.users: set[bytes] = set()
        self.unique_ids = itertools.count(1)
        self.dirty_rooms: dict[Room, None] = {}
        self.dirty_clients: dict[Client, None] = {}
        self.scheduled = False

    def schedule(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def publish(self, room: Room, data: bytes) -> None:
        if not room.pending:
            self.dirty_rooms[room] = None
            self.schedule()
        room.pending.append(data)

    def flush_room(self, room: Room) -> None:
        pending = room.pending
        if pending:
            room.pending = []
            self.dirty_rooms.pop(room, None)
            self.fanout(
                room.members, pending[0] if len(pending) == 1 else b"".join(pending)
            )

    def fanout(self, members: dict[Client, None] | list[Client], data: bytes) -> None:
        dirty = self.dirty_clients
        for client in members:
            client.out.append(data)
            dirty[client] = None
        self.schedule()

    def flush(self) -> None:
        self.scheduled = False
        rooms, self.dirty_rooms = self.dirty_rooms, {}
        for room in rooms:
            pending = room.pending
            room.pending = []
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            dirty = self.dirty_clients
            for client in room.members:
                client.out.append(data)
                dirty[client] = None
        clients, self.dirty_clients = self.dirty_clients, {}
        for client in clients:
            client.write_out()


class Client(asyncio.Protocol):
    """
    One connection: its input buffer, its login/room state and its output queue.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = bytearray()
        self.out: list[bytes] = []
        self.user_id = b""
        self.unique_id = 0
        self.logged_in = False
        self.room: Room | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes) -> None:
        self.out.append(data)
        self.server.dirty_clients[self] = None
        self.server.schedule()

    def write_out(self) -> None:
        out = self.out
        if not out or self.closed:
            out.clear()
            return
        self.out = []
        transport = self.transport
        assert transport is not None
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        if transport.get_write_buffer_size() > self.server.send_limit:
            self.drop()

    def drop(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.abort()

    def pause_writing(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        buffer = self.buffer
        buffer += data
        end = len(buffer)
        offset = 0
        unpack_from = LENGTH_ID.unpack_from
        while end - offset >= HEADER_SIZE:
            length, packet_id = unpack_from(buffer, offset)
            if length < HEADER_SIZE or length > MAX_PACKET:
                self.drop()
                return
            stop = offset + length
            if stop > end:
                break
            body = bytes(buffer[offset + HEADER_SIZE : stop])
            offset = stop
            if not self.handle(packet_id, body):
                self.drop()
                return
        del buffer[:offset]

    def handle(self, packet_id: int, body: bytes) -> bool:
        """
        Apply one request; return False for a protocol error.
        """
        size = len(body)
        if packet_id == CHAT_REQUEST:
            if not 1 <= size <= MSG_FIELD:
                return False
            self.chat(strip(body))
        elif packet_id == LOGIN_REQUEST:
            if size != 2 * ID_FIELD:
                return False
            self.login(strip(body[:ID_FIELD]))
        elif packet_id == ENTER_REQUEST:
            if size != ROOM_NUMBER.size:
                return False
            self.enter(ROOM_NUMBER.unpack(body)[0])
        elif packet_id == LEAVE_REQUEST:
            if size:
                return False
            self.leave()
        return True

    def login(self, user_id: bytes) -> None:
        users = self.server.users
        if self.logged_in:
            code = ALREADY
        elif not user_id:
            code = INVALID_PW
        elif len(users) >= self.server.max_users:
            code = FULL_SERVER
        elif user_id in users:
            code = ALREADY
        else:
            users.add(user_id)
            self.user_id = user_id
            self.unique_id = next(self.server.unique_ids)
            self.logged_in = True
            code = OK
        self.send(_RESULTS[(LOGIN_RESPONSE, code)])

    def enter(self, number: int) -> None:
        server = self.server
        room = server.rooms.get(number)
        if self.room is not None:
            code = ALREADY_IN_ROOM
        elif not self.logged_in:
            code = NOT_LOGGED_IN
        elif room is None:
            code = INVALID_ROOM
        elif len(room.members) >= room.capacity:
            code = ROOM_FULL
        else:
            server.flush_room(room)
            present = list(room.members)
            server.fanout(
                present,
                packet(
                    NEW_USER_NTF,
                    USER_ENTRY.pack(self.unique_id, len(self.user_id)) + self.user_id,
                ),
            )
            room.members[self] = None
            self.room = room
            self.send(_RESULTS[(ENTER_RESPONSE, OK)])
            for chunk in user_lists(present):
                self.send(chunk)
            return
        self.send(_RESULTS[(ENTER_RESPONSE, code)])

    def leave(self) -> None:
        if self.room is not None:
            self.leave_room()
            self.send(_RESULTS[(LEAVE_RESPONSE, OK)])
        else:
            code = INVALID_ROOM if self.logged_in else NOT_LOGGED_IN
            self.send(_RESULTS[(LEAVE_RESPONSE, code)])

    def leave_room(self) -> None:
        room = self.room
        assert room is not None
        server = self.server
        server.flush_room(room)
        del room.members[self]
        self.room = None
        if room.members:
            server.fanout(
                room.members, packet(LEAVE_USER_NTF, UNIQUE_ID.pack(self.unique_id))
            )

    def chat(self, message: bytes) -> None:
        room = self.room
        if room is None:
            code = CHAT_NO_ROOM if self.logged_in else NOT_LOGGED_IN
            self.send(_RESULTS[(CHAT_RESPONSE, code)])
            return
        self.send(CHAT_OK)
        self.server.publish(
            room,
            packet(
                CHAT_NOTIFY,
                self.user_id.ljust(ID_FIELD, b"\0") + message.ljust(MSG_FIELD, b"\0"),
            ),
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.out.clear()
        if self.room is not None:
            self.leave_room()
        if self.logged_in:
            self.server.users.discard(self.user_id)
            self.logged_in = False


def user_lists(members: list[Client]) -> list[bytes]:
    """
    ROOM_USER_LIST_NTF packets for C{members}: at most 1024 bytes and 127
    users each; an empty room is one packet with a count of 0 (as chatsvc).
    """
    packets = []
    entries: list[bytes] = []
    used = 0
    room = MAX_PACKET - HEADER_SIZE - 1
    for member in members:
        entry = USER_ENTRY.pack(member.unique_id, len(member.user_id)) + member.user_id
        if entries and (used + len(entry) > room or len(entries) == 127):
            packets.append(
                packet(USER_LIST_NTF, bytes([len(entries)]) + b"".join(entries))
            )
            entries, used = [], 0
        entries.append(entry)
        used += len(entry)
    packets.append(packet(USER_LIST_NTF, bytes([len(entries)]) + b"".join(entries)))
    return packets


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    server = Server(args)
    listener = await loop.create_server(
        lambda: Client(server), args.host, args.port, backlog=args.backlog
    )
    stop: asyncio.Future[None] = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, request_stop)
    print(f"uvloop-chat listening on {args.host}:{args.port}", flush=True)
    async with listener:
        await stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11021)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--room-start", type=int, default=0)
    parser.add_argument("--room-capacity", type=int, default=4)
    parser.add_argument("--max-users", type=int, default=10_000)
    parser.add_argument(
        "--send-limit",
        type=int,
        default=256 * 1024,
        help="unsent bytes per client before it is cut off",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=1024,
        help="listen backlog (1024, as chatsvc's default endpoint)",
    )
    parser.add_argument(
        "--asyncio", action="store_true", help="plain asyncio instead of uvloop"
    )
    args = parser.parse_args(argv)  # fmt: skip
    if args.asyncio:
        asyncio.run(serve(args))
    else:
        import uvloop

        uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
