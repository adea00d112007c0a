"""
A cluster of real chatsvc processes (C{twistd -n chatsvc --cluster ...}) on
a real Redis: a node killed with SIGKILL is cleaned up by the others.
"""

from __future__ import annotations

import signal
import socket
import time

from twisted.trial.unittest import SynchronousTestCase

from chatsvc.protocol import (
    ChatNotify,
    Event,
    PacketDecoder,
    PacketId,
    Response,
    UserLeft,
    UserList,
    chat_request,
    enter_room_request,
    login_request,
    parse_event,
)
from tests.support import RedisServer
from tests.test_twistd import Twistd


class Client:
    """
    A blocking test client.
    """

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), 5)
        self.decoder = PacketDecoder()
        self.events: list[Event] = []

    def close(self) -> None:
        self.socket.close()

    def send(self, data: bytes) -> None:
        self.socket.sendall(data)

    def read_until(self, condition: object, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():  # type: ignore[operator]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"condition not met; got {self.events}")
            self.socket.settimeout(left)
            try:
                data = self.socket.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise AssertionError("connection closed")
            self.decoder.feed(data)
            while (packet := self.decoder.next_packet()) is not None:
                self.events.append(parse_event(packet))

    def request(self, data: bytes, answer: PacketId) -> int:
        count = len(self.events)
        self.send(data)

        def answers() -> list[int]:
            return [
                e.result
                for e in self.events[count:]
                if isinstance(e, Response) and e.packet_id == answer
            ]

        self.read_until(lambda: bool(answers()))
        return answers()[0]


class NodeDeathTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.redis = RedisServer()
        self.redis.start()
        self.addCleanup(self.redis.close)

    def node(self, name: str, timeout: float = 3) -> tuple[Twistd, int]:
        twistd = Twistd(
            [
                "chatsvc",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--cluster",
                self.redis.url,
                "--node-id",
                name,
                "--node-timeout",
                str(timeout),
                "--chat-rate",
                "0",
                "--shutdown-grace",
                "1",
            ]
        )
        self.addCleanup(twistd.stop)
        match = twistd.wait_for(r"listening on 127\.0\.0\.1:(\d+)")
        twistd.wait_for(r"cluster Redis at .* is up")
        return twistd, int(match.group(1))

    def client(self, port: int, user: str) -> Client:
        client = Client(port)
        self.addCleanup(client.close)
        self.assertEqual(
            client.request(login_request(user, "pw"), PacketId.LOGIN_RESPONSE), 0
        )
        return client

    def test_sigkill_mid_chat(self) -> None:
        """
        The survivors see the dead node's users leave within the node timeout,
        and their ids log in elsewhere.
        """
        _, first = self.node("n1")
        killed, second = self.node("n2")
        alice = self.client(first, "alice")
        bob = self.client(second, "bob")
        for client in (alice, bob):
            self.assertEqual(
                client.request(enter_room_request(0), PacketId.ROOM_ENTER_RESPONSE), 0
            )
        [listing] = [e for e in bob.events if isinstance(e, UserList)]
        self.assertEqual([u for _, u in listing.users], [b"alice"])
        bob.send(chat_request("before"))
        alice.read_until(lambda: ChatNotify(b"bob", b"before") in alice.events)
        for i in range(20):
            alice.send(chat_request(f"m{i}"))
        killed.process.send_signal(signal.SIGKILL)
        killed.process.wait(10)
        died = time.monotonic()
        alice.read_until(
            lambda: any(isinstance(e, UserLeft) for e in alice.events), timeout=10
        )
        # Within the node timeout, and a second for a busy machine.
        self.assertLess(time.monotonic() - died, 3 + 1)
        [left] = [e for e in alice.events if isinstance(e, UserLeft)]
        self.assertNotEqual(left.unique_id, 0)
        again = self.client(first, "bob")
        self.assertEqual(
            again.request(enter_room_request(0), PacketId.ROOM_ENTER_RESPONSE), 0
        )
        alice.read_until(
            lambda: sum(isinstance(e, ChatNotify) for e in alice.events) == 21
        )

    def test_sigterm_takes_the_users_out_at_once(self) -> None:
        _, first = self.node("n1", timeout=30)
        stopped, second = self.node("n2", timeout=30)
        alice = self.client(first, "alice")
        bob = self.client(second, "bob")
        for client in (alice, bob):
            self.assertEqual(
                client.request(enter_room_request(0), PacketId.ROOM_ENTER_RESPONSE), 0
            )
        started = time.monotonic()
        self.assertEqual(stopped.stop(), 0)
        alice.read_until(lambda: UserLeft in map(type, alice.events))
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(
            self.client(first, "bob").events, [Response(PacketId.LOGIN_RESPONSE, 0)]
        )


def chats(client: Client) -> list[bytes]:
    return [e.message for e in client.events if isinstance(e, ChatNotify)]


class ShardListTests(SynchronousTestCase):
    def test_node_given_other_shards_exits(self) -> None:
        """
        A node whose --cluster list differs from the running cluster's says
        so and exits with status 1.
        """
        redises = [RedisServer(), RedisServer()]
        for redis in redises:
            redis.start()
            self.addCleanup(redis.close)
        both = ",".join(redis.url for redis in redises)
        first = Twistd(
            ["chatsvc", "--listen", "tcp:0:interface=127.0.0.1", "--cluster", both]
        )
        self.addCleanup(first.stop)
        first.wait_for(r"listening on 127\.0\.0\.1:(\d+)")
        first.wait_for(r"is up")
        other = Twistd(
            [
                "chatsvc",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--cluster",
                redises[0].url,
            ]
        )
        self.addCleanup(other.stop)
        other.wait_for(r"Not joining the cluster: .* same --cluster list")
        self.assertEqual(other.process.wait(20), 1)
