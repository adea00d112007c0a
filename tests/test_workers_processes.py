"""
C{twistd -n chatsvc --workers 2}: two real worker processes on one port, one
chat across them; a worker killed is replaced, SIGTERM stops them all.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import time
import urllib.request

from twisted.trial.unittest import SynchronousTestCase

from chatsvc.protocol import (
    ChatNotify,
    PacketId,
    UserLeft,
    UserList,
    chat_request,
    enter_room_request,
    login_request,
    parse_event,
)
from tests.support import RedisServer
from tests.test_cluster_processes import Client
from tests.test_twistd import Twistd

USERS = 50
ROOMS = 5


def consecutive_free_ports(count: int) -> int:
    """
    The first of C{count} consecutive TCP ports that were free a moment ago.
    """
    while True:
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            base = int(first.getsockname()[1])
            if base + count > 65535:
                continue
            others = []
            try:
                for port in range(base + 1, base + count):
                    other = socket.socket()
                    others.append(other)
                    other.bind(("127.0.0.1", port))
            except OSError:
                continue
            finally:
                for other in others:
                    other.close()
            return base


def metric(port: int, name: str) -> dict[str, float]:
    """
    The samples of one metric served on C{port}, by their labels.
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(\{{.*\}})? (\S+)", line)
        if match:
            samples[match.group(1) or ""] = float(match.group(2))
    return samples


class WorkersTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.redis = RedisServer()
        self.redis.start()
        self.addCleanup(self.redis.close)
        self.metrics = consecutive_free_ports(2)
        self.twistd = Twistd(
            [
                "chatsvc",
                "--workers",
                "2",
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--cluster",
                self.redis.url,
                "--metrics",
                f"tcp:{self.metrics}:interface=127.0.0.1",
                "--node-timeout",
                "2",
                "--chat-rate",
                "0",
                "--rooms",
                str(ROOMS),
                "--room-capacity",
                str(USERS // ROOMS),
            ]
        )
        self.addCleanup(self.twistd.stop)
        match = self.twistd.wait_for(r"workers listening on 127\.0\.0\.1:(\d+)")
        self.port = int(match.group(1))
        for _ in range(2):
            self.twistd.wait_for(r"chatsvc chat listening on")

    def client(self, user: str) -> Client:
        client = Client(self.port)
        self.addCleanup(client.close)
        self.assertEqual(
            client.request(login_request(user, "pw"), PacketId.LOGIN_RESPONSE), 0
        )
        return client

    def users_per_worker(self) -> list[float]:
        return [metric(self.metrics + i, "chatsvc_users")[""] for i in range(2)]

    def test_workers_share_one_chat(self) -> None:
        """
        50 users land on both workers and chat in rooms spanning both; a
        worker killed is replaced by one with a new node id, its users leave
        their rooms for the others and log in again; SIGTERM stops
        everything with status 0.
        """
        # Both workers accept from one queue, so which one takes a connection
        # is up to the kernel's scheduling. To make sure both take some, each
        # half of the users connects while the other worker is stopped
        # (SIGSTOP: a busy worker leaves the queue to the other).
        pids = [
            int(self.logged(rf"Worker {n} started: pid (\d+)").group(1)) for n in (1, 2)
        ]
        for pid in pids:
            self.addCleanup(resume, pid)
        clients = {}
        for i in range(USERS):
            if i in (0, USERS // 2):
                running, stopped = pids if i else pids[::-1]
                os.kill(running, signal.SIGCONT)
                os.kill(stopped, signal.SIGSTOP)
            user = f"user{i}"
            clients[user] = self.client(user)
            room = i % ROOMS
            self.assertEqual(
                clients[user].request(
                    enter_room_request(room), PacketId.ROOM_ENTER_RESPONSE
                ),
                0,
            )
        os.kill(pids[1], signal.SIGCONT)
        per_worker = self.users_per_worker()
        self.assertEqual(per_worker, [USERS // 2, USERS // 2])
        rooms = [metric(self.metrics + i, "chatsvc_room_users") for i in range(2)]
        spanning = [
            room for room, count in rooms[0].items() if count and rooms[1].get(room)
        ]
        self.assertTrue(spanning, rooms)
        last = clients[f"user{USERS - 1}"]
        [listing] = [e for e in last.events if isinstance(e, UserList)]
        self.assertEqual(len(listing.users), USERS // ROOMS - 1)

        self.chat_in_every_room(clients, "hello")

        started = self.logged(r"Worker 1 started: pid (\d+), node (\S+)")
        pid, node = int(started.group(1)), started.group(2)
        os.kill(pid, signal.SIGKILL)
        replaced = self.twistd.wait_for(
            rf"Worker 1 \(pid {pid}, node {re.escape(node)}\) was killed by"
            r" SIGKILL.* starting a new one as node (\S+)"
        )
        new_node = replaced.group(1)
        self.assertNotEqual(new_node, node)
        self.twistd.wait_for(rf"Worker 1 started: pid \d+, node {re.escape(new_node)}")
        self.twistd.wait_for(r"chatsvc chat listening on")

        dead = closed(clients, int(per_worker[0]))
        for user in dead:
            del clients[user]
        for user, client in clients.items():
            room = int(user[4:]) % ROOMS
            gone = sum(1 for other in dead if int(other[4:]) % ROOMS == room)
            client.read_until(
                lambda c=client, n=gone: left(c) == n, timeout=2 + 2 / 3 + 5
            )
        for user in sorted(dead):
            clients[user] = self.client(user)
            self.assertEqual(
                clients[user].request(
                    enter_room_request(int(user[4:]) % ROOMS),
                    PacketId.ROOM_ENTER_RESPONSE,
                ),
                0,
            )
        self.chat_in_every_room(clients, "again")
        self.assertEqual(sum(self.users_per_worker()), USERS)

        self.assertEqual(self.twistd.stop(), 0)
        self.assertIn("All workers stopped cleanly", "".join(self.twistd.log))

    def logged(self, pattern: str) -> re.Match[str]:
        for line in self.twistd.log:
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"{pattern!r} not logged")

    def chat_in_every_room(self, clients: dict[str, Client], text: str) -> None:
        """
        The first user of each room says C{text}; every member, on either
        worker, gets it exactly once.
        """
        for room in range(ROOMS):
            clients[f"user{room}"].send(chat_request(f"{text} {room}"))
        for user, client in clients.items():
            room = int(user[4:]) % ROOMS
            expected = ChatNotify(f"user{room}".encode(), f"{text} {room}".encode())
            client.read_until(lambda c=client, e=expected: e in c.events)
            self.assertEqual(client.events.count(expected), 1)


def resume(pid: int) -> None:
    """
    Let process C{pid} run again if it still exists.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def left(client: Client) -> int:
    return sum(isinstance(e, UserLeft) for e in client.events)


def closed(clients: dict[str, Client], count: int, timeout: float = 10) -> set[str]:
    """
    The users of C{clients} whose connections were closed, once there are
    C{count} of them (the others' input is read on the way).
    """
    by_socket = {client.socket: user for user, client in clients.items()}
    dead: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(dead) < count and time.monotonic() < deadline:
        live = [s for s, user in by_socket.items() if user not in dead]
        readable, _, _ = select.select(live, [], [], 0.5)
        for s in readable:
            user = by_socket[s]
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                dead.add(user)
                continue
            client = clients[user]
            client.decoder.feed(data)
            while (packet := client.decoder.next_packet()) is not None:
                client.events.append(parse_event(packet))
    if len(dead) != count:
        raise AssertionError(f"{len(dead)} connections closed, not {count}")
    return dead
