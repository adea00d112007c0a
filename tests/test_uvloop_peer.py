"""
The chat benchmark's peer (C{bench/peers/uvloop_chat.py}) speaks chatsvc's
protocol byte for byte: one conversation, played against chatsvc and against
the peer, gives every client exactly the bytes written down here.
"""

from __future__ import annotations

import importlib.util
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from twisted.internet.task import deferLater

from chatsvc.content.chat import ChatConfig
from chatsvc.host.services import chat_service
from chatsvc.net.config import NetConfig
from tests.integration.base import LOOPBACK, IntegrationTestCase
from tests.support import PacketClient, reactor

PEER = Path(__file__).resolve().parent.parent / "bench" / "peers" / "uvloop_chat.py"
ROOMS, CAPACITY = 10, 2
QUIET = 0.05
"""Seconds to wait after the expected bytes for any unexpected ones."""


def packet(packet_id: int, body: bytes = b"") -> bytes:
    return struct.pack("<HHB", 5 + len(body), packet_id, 0) + body


def login(user: bytes) -> bytes:
    return packet(201, user.ljust(33, b"\0") + b"pw".ljust(33, b"\0"))


def enter(room: int) -> bytes:
    return packet(206, struct.pack("<i", room))


def chat(message: bytes) -> bytes:
    return packet(221, message.ljust(257, b"\0"))


LEAVE = packet(215)


def login_result(code: int) -> bytes:
    return packet(202, struct.pack("<H", code))


def result(packet_id: int, code: int) -> bytes:
    return packet(packet_id, struct.pack("<h", code))


def enter_result(code: int) -> bytes:
    return result(207, code)


def leave_result(code: int) -> bytes:
    return result(216, code)


def chat_result(code: int) -> bytes:
    return result(222, code)


def user_list(*users: tuple[int, bytes]) -> bytes:
    entries = b"".join(struct.pack("<qb", u, len(name)) + name for u, name in users)
    return packet(209, bytes([len(users)]) + entries)


def new_user(unique_id: int, name: bytes) -> bytes:
    return packet(208, struct.pack("<qb", unique_id, len(name)) + name)


def left(unique_id: int) -> bytes:
    return packet(217, struct.pack("<q", unique_id))


def notify(sender: bytes, message: bytes) -> bytes:
    return packet(223, sender.ljust(33, b"\0") + message.ljust(257, b"\0"))


if TYPE_CHECKING:
    _Base = IntegrationTestCase
else:
    _Base = object


class ConversationMixin(_Base):
    """
    The conversation; a subclass says which server it is played against.
    """

    async def serve(self) -> int:
        """
        Start the server (rooms 0..9, 2 users each, open login, no chat rate
        limit); return its port.
        """
        raise NotImplementedError

    async def step(
        self,
        clients: list[PacketClient],
        sender: int,
        request: bytes,
        expected: dict[int, bytes],
    ) -> None:
        """
        Send C{request} from client C{sender}; check that each client gets
        exactly C{expected[client]} (nothing if absent).
        """
        before = [len(client.raw) for client in clients]
        clients[sender].send(request)
        for index, data in expected.items():
            client, size = clients[index], before[index] + len(data)
            await client.wait_until(lambda c=client, n=size: len(c.raw) >= n)
        await deferLater(reactor, QUIET, lambda: None)
        for index, client in enumerate(clients):
            self.assertEqual(
                bytes(client.raw[before[index] :]),
                expected.get(index, b""),
                f"client {index} after {request[:16]!r}",
            )

    async def test_conversation(self) -> None:
        port = await self.serve()
        a, b, c, d = clients = await self.connect(port, 4)
        step = self.step
        # Logins: duplicate id, empty id, requests before login, login twice.
        await step(clients, 0, login(b"alice"), {0: login_result(0)})
        await step(clients, 1, login(b"alice"), {1: login_result(31)})
        await step(clients, 1, login(b""), {1: login_result(33)})
        await step(clients, 1, enter(1), {1: enter_result(51)})
        await step(clients, 1, chat(b"x"), {1: chat_result(51)})
        await step(clients, 1, LEAVE, {1: leave_result(51)})
        await step(clients, 1, login(b"bob"), {1: login_result(0)})
        await step(clients, 1, login(b"bob2"), {1: login_result(31)})
        # Rooms: leave and chat in no room, an empty room, a bad room, a full one.
        await step(clients, 0, LEAVE, {0: leave_result(61)})
        await step(clients, 0, chat(b"x"), {0: chat_result(81)})
        await step(clients, 0, enter(1), {0: enter_result(0) + user_list()})
        await step(clients, 0, enter(2), {0: enter_result(52)})
        await step(clients, 1, enter(ROOMS), {1: enter_result(61)})
        await step(clients, 1, enter(-1), {1: enter_result(61)})
        await step(
            clients,
            1,
            enter(1),
            {0: new_user(2, b"bob"), 1: enter_result(0) + user_list((1, b"alice"))},
        )
        await step(clients, 2, login(b"carol"), {2: login_result(0)})
        await step(clients, 2, enter(1), {2: enter_result(54)})
        # Chat: two chats in one write: the responses, then the notifies in
        # order; a message is kept up to its first NUL; an unknown id is ignored.
        hi, there = notify(b"alice", b"hi"), notify(b"alice", b"there")
        await step(
            clients,
            0,
            chat(b"hi") + packet(999, b"?") + chat(b"there\0hidden"),
            {0: chat_result(0) * 2 + hi + there, 1: hi + there},
        )
        await step(
            clients,
            1,
            packet(221, b"short"),
            {0: notify(b"bob", b"short"), 1: chat_result(0) + notify(b"bob", b"short")},
        )
        # Leaving and disconnecting tell the others; the id is free again.
        await step(clients, 1, LEAVE, {0: left(2), 1: leave_result(0)})
        await step(clients, 1, LEAVE, {1: leave_result(61)})
        await step(
            clients,
            2,
            enter(1),
            {0: new_user(3, b"carol"), 2: enter_result(0) + user_list((1, b"alice"))},
        )
        before = len(c.raw)
        a.transport.loseConnection()  # type: ignore[union-attr]
        await a.lost
        await c.wait_until(lambda: len(c.raw) >= before + len(left(1)))
        self.assertEqual(bytes(c.raw[before:]), left(1))
        rest = [b, c, d]
        await step(rest, 2, login(b"alice"), {2: login_result(0)})
        await step(
            rest,
            0,
            enter(1),
            {0: enter_result(0) + user_list((3, b"carol")), 1: new_user(2, b"bob")},
        )

    async def test_protocol_errors_disconnect(self) -> None:
        port = await self.serve()
        bad_body, bad_length, good = await self.connect(port, 3)
        bad_body.send(packet(201, b"short"))
        bad_length.send(struct.pack("<HHB", 2000, 221, 0))
        await bad_body.lost
        await bad_length.lost
        self.assertEqual((bytes(bad_body.raw), bytes(bad_length.raw)), (b"", b""))
        await self.step([good], 0, login(b"good"), {0: login_result(0)})


class ChatsvcConversationTests(ConversationMixin, IntegrationTestCase):
    async def serve(self) -> int:
        service = chat_service(
            LOOPBACK,
            NetConfig(),
            ChatConfig(rooms=ROOMS, room_capacity=CAPACITY, chat_rate=0),
            reactor=reactor,
        )
        return await self.start(service)


class UvloopPeerConversationTests(ConversationMixin, IntegrationTestCase):
    async def serve(self) -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        argv = [
            sys.executable, str(PEER), "--port", str(port),
            "--rooms", str(ROOMS), "--room-capacity", str(CAPACITY),
        ]  # fmt: skip
        if importlib.util.find_spec("uvloop") is None:
            argv.append("--asyncio")
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.addCleanup(self._stop, process)
        assert process.stdout is not None
        line = process.stdout.readline()
        self.assertIn(b"listening", line, "the peer did not start")
        return port

    @staticmethod
    def _stop(process: subprocess.Popen[bytes]) -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
