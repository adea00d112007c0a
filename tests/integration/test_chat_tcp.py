"""
The chat stage over real TCP: the reference client's byte layouts, many users
in many rooms, slow consumers and Redis logins.
"""

from __future__ import annotations

import socket
import struct
from collections import defaultdict

from twisted.internet.task import deferLater
from twisted.logger import LogLevel, capturedLogs

from chatsvc.cluster.config import ClusterConfig
from chatsvc.content.chat import ChatConfig
from chatsvc.host.redis_login import RedisURL
from chatsvc.host.services import ChatService, chat_service
from chatsvc.net.config import NetConfig
from chatsvc.protocol import (
    ChatNotify,
    PacketId,
    Response,
    UserList,
    chat_request,
    enter_room_request,
    leave_room_request,
    login_request,
)
from tests.integration.base import LOOPBACK, IntegrationTestCase, wait_all
from tests.support import (
    EXPECT_REACTOR,
    ExternalRedis,
    PacketClient,
    RedisServer,
    reactor,
    start_redis,
)

LOGIN = PacketId.LOGIN_RESPONSE
ENTER = PacketId.ROOM_ENTER_RESPONSE
CHAT = PacketId.ROOM_CHAT_RESPONSE


class ChatTestCase(IntegrationTestCase):
    #: Nodes serving the chat: 1 (no cluster), or more (a cluster on a Redis
    #: of the test's own, clients connected to the nodes in turn).
    nodes = 1

    async def start_chat(
        self,
        chat: ChatConfig | None = None,
        net: NetConfig | None = None,
        **kwargs: object,
    ) -> int:
        services = []
        for node in range(self.nodes):
            if self.nodes > 1:
                kwargs["cluster"] = ClusterConfig(
                    RedisURL.parse(self.cluster_redis().url), f"node-{node}"
                )
            services.append(
                chat_service(
                    LOOPBACK,
                    net or NetConfig(),
                    chat or ChatConfig(chat_rate=0),
                    reactor=reactor,
                    **kwargs,  # type: ignore[arg-type]
                )
            )
        self.service: ChatService = services[0]
        self.ports = [await self.start(service) for service in services]
        while self.nodes > 1 and not all(
            s.cluster and s.cluster.node._registered for s in services
        ):
            await deferLater(reactor, 0.02, lambda: None)
        return self.ports[0]

    def cluster_redis(self) -> RedisServer | ExternalRedis:
        redis = getattr(self, "redis", None)
        if redis is None:
            self.redis = redis = start_redis(self)
        return redis

    async def connect(self, port: int, count: int = 1) -> list[PacketClient]:
        if self.nodes == 1 or port != self.ports[0]:
            return await super().connect(port, count)
        clients = []
        for i in range(count):
            clients += await super().connect(self.ports[i % self.nodes])
        return clients

    async def wait_for_room_mates(
        self, clients: list[PacketClient], room_size: int
    ) -> None:
        """
        Wait until each of C{clients} has heard of the other members of its
        room of C{room_size}: in its user list, or as they entered after it.
        """
        await wait_all(
            clients,
            lambda c: (
                sum(1 for e in c.events if not isinstance(e, Response | UserList))
                >= room_size
                - 1
                - sum(len(e.users) for e in c.events if isinstance(e, UserList))
            ),
        )

    async def login(self, client: PacketClient, user: str, password: str = "pw") -> int:
        count = len(client.events)
        client.send(login_request(user, password))
        await client.wait_events(count + 1)
        event = client.events[count]
        assert isinstance(event, Response) and event.packet_id == LOGIN, event
        return event.result


class ReferenceClientTests(ChatTestCase):
    async def test_session_as_the_csharp_client_sees_it(self) -> None:
        """
        LOGIN_REQUEST is 71 bytes, ROOM_CHAT_REQUEST 262; the notify is read at
        the reference client's offsets.
        """
        port = await self.start_chat()
        alice, bob = await self.connect(port, 2)
        for client, name in ((alice, b"alice"), (bob, b"bob")):
            request = (
                struct.pack("<HHB", 71, 201, 0)
                + name.ljust(33, b"\0")
                + b"pw".ljust(33, b"\0")
            )
            self.assertEqual(len(request), 71)
            client.send(request)
            await client.wait_events(1)
            self.assertEqual(bytes(client.raw), struct.pack("<HHBH", 7, 202, 0, 0))
            client.raw.clear()
            client.send(struct.pack("<HHBi", 9, 206, 0, 5))
            await client.wait_until(lambda c=client: len(c.raw) >= 7)
            self.assertEqual(bytes(client.raw[:7]), struct.pack("<HHBh", 7, 207, 0, 0))
            client.raw.clear()
        await alice.wait_until(lambda: len(alice.raw) >= 17)  # bob's ROOM_NEW_USER_NTF
        alice.raw.clear()
        message = "안녕 IOCP".encode()
        chat = struct.pack("<HHB", 262, 221, 0) + message.ljust(257, b"\0")
        self.assertEqual(len(chat), 262)
        alice.send(chat)
        await alice.wait_until(lambda: len(alice.raw) >= 7 + 295)
        await bob.wait_until(lambda: len(bob.raw) >= 295)
        self.assertEqual(bytes(alice.raw[:7]), struct.pack("<HHBh", 7, 222, 0, 0))
        for raw in (bytes(alice.raw[7:]), bytes(bob.raw)):
            length, packet_id, _ = struct.unpack_from("<HHB", raw)
            self.assertEqual((length, packet_id, len(raw)), (295, 223, 295))
            body = raw[5:]
            self.assertEqual(body[0:33].rstrip(b"\0"), b"alice")
            self.assertEqual(body[33:290].rstrip(b"\0"), message)

    async def test_wrong_body_length_disconnects(self) -> None:
        port = await self.start_chat()
        bad, good = await self.connect(port, 2)
        with capturedLogs() as events:
            bad.send(struct.pack("<HHB", 10, 201, 0) + b"short")
            await bad.lost
        [warning] = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertIn("LOGIN_REQUEST body of 5 bytes", warning["reason"])
        self.assertEqual(await self.login(good, "good"), 0)

    async def test_disconnect_frees_the_id(self) -> None:
        port = await self.start_chat()
        first, second = await self.connect(port, 2)
        self.assertEqual(await self.login(first, "alice"), 0)
        self.assertEqual(await self.login(second, "alice"), 31)
        first.transport.loseConnection()  # type: ignore[union-attr]
        await first.lost
        await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(await self.login(second, "alice"), 0)


class ManyUsersTests(ChatTestCase):
    async def test_500_users_50_rooms(self) -> None:
        """
        Every member receives every notify of its room exactly once, in one
        order shared by all members, and each sender's in its sending order.
        """
        users, rooms, messages = (
            (500, 50, 10) if EXPECT_REACTOR != "iocp" else (100, 10, 5)
        )
        per_room = users // rooms
        port = await self.start_chat(
            ChatConfig(rooms=rooms, room_capacity=per_room, chat_rate=0),
            NetConfig(max_connections_per_ip=0),  # all users come from 127.0.0.1
        )
        clients = await self.connect(port, users)
        for i, client in enumerate(clients):
            client.send(login_request(f"user{i}", "pw") + enter_room_request(i % rooms))
        await wait_all(
            clients,
            lambda c: any(
                isinstance(e, Response) and e.packet_id == ENTER for e in c.events
            ),
        )
        for client in clients:
            self.assertEqual(
                [e for e in client.events if isinstance(e, Response)],
                [Response(LOGIN, 0), Response(ENTER, 0)],
            )
        await self.wait_for_room_mates(clients, per_room)
        for client in clients:
            client.take()
        for n in range(messages):
            for i, client in enumerate(clients):
                client.send(chat_request(f"{i}:{n}"))
            await deferLater(reactor, 0, lambda: None)
        expected = per_room * messages
        await wait_all(
            clients,
            lambda c: sum(isinstance(e, ChatNotify) for e in c.events) >= expected,
            timeout=90,
        )
        sequences: dict[int, list[list[bytes]]] = defaultdict(list)
        for i, client in enumerate(clients):
            notifies = [e.message for e in client.events if isinstance(e, ChatNotify)]
            responses = [e for e in client.events if isinstance(e, Response)]
            self.assertEqual(responses, [Response(CHAT, 0)] * messages)
            self.assertEqual(len(notifies), expected)
            self.assertEqual(len(set(notifies)), expected, "duplicates")
            sequences[i % rooms].append(notifies)
        for room, members in sequences.items():
            first = members[0]
            for other in members[1:]:
                self.assertEqual(
                    other, first, f"room {room}: members disagree on order"
                )
            for sender in range(room, users, rooms):
                mine = [m for m in first if m.startswith(b"%d:" % sender)]
                self.assertEqual(
                    mine, [b"%d:%d" % (sender, n) for n in range(messages)]
                )

    async def test_busy_room(self) -> None:
        """
        Turns that carry tens of kilobytes of notifies to a room (every
        member sends a burst of chats at once; on Linux such turns are
        spliced into the members' sockets) reach every member whole, in one
        order shared by all, each sender's in its sending order.
        """
        members, burst = 6, 128
        port = await self.start_chat(
            ChatConfig(rooms=1, room_capacity=members, chat_rate=0),
            NetConfig(max_connections_per_ip=0, batch_size=burst),
        )
        clients = await self.connect(port, members)
        for i, client in enumerate(clients):
            client.send(login_request(f"user{i}", "pw") + enter_room_request(0))
        await self.wait_for_room_mates(clients, members)
        for client in clients:
            client.take()
        for i, client in enumerate(clients):
            client.send(b"".join(chat_request(f"{i}:{n}") for n in range(burst)))
        expected = members * burst
        await wait_all(
            clients,
            lambda c: sum(isinstance(e, ChatNotify) for e in c.events) >= expected,
            timeout=60,
        )
        orders = []
        for client in clients:
            responses = [e for e in client.events if isinstance(e, Response)]
            self.assertEqual(responses, [Response(CHAT, 0)] * burst)
            orders.append(
                [e.message for e in client.events if isinstance(e, ChatNotify)]
            )
        for other in orders[1:]:
            self.assertEqual(other, orders[0])
        for sender in range(members):
            self.assertEqual(
                [m for m in orders[0] if m.startswith(b"%d:" % sender)],
                [b"%d:%d" % (sender, n) for n in range(burst)],
            )

    async def test_slow_consumer_cut_off_others_unaffected(self) -> None:
        port = await self.start_chat(
            ChatConfig(room_capacity=3, chat_rate=0),
            NetConfig(send_queue_limit=32 * 1024),
        )
        talker, listener, sleeper = await self.connect(port, 3)
        for client, name in ((talker, "t"), (listener, "l"), (sleeper, "s")):
            self.assertEqual(await self.login(client, name), 0)
            client.send(enter_room_request(1))
            await client.wait_until(
                lambda c=client: any(
                    isinstance(e, Response) and e.packet_id == ENTER for e in c.events
                )
            )
        # Small socket buffers on both ends, so the kernel cannot hide the
        # backlog and the server's own queue has to hold it.
        sleeper.transport.getHandle().setsockopt(  # type: ignore[union-attr]
            socket.SOL_SOCKET, socket.SO_RCVBUF, 4096
        )
        [sleeper_session] = [
            s
            for s in self.service.factory.connections.values()
            if s.peer == f"127.0.0.1:{sleeper.local_port}"
        ]
        sleeper_session.transport.getHandle().setsockopt(  # type: ignore[union-attr]
            socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
        )
        sleeper.transport.pauseProducing()  # type: ignore[union-attr]
        count = 6000
        answered = len(talker.events)
        with capturedLogs() as events:
            for n in range(1, count + 1):
                talker.send(chat_request(f"{n - 1}".ljust(200, ".")))
                if n % 100 == 0:
                    # The talker reads what it gets, its own notifies too: at
                    # most 100 of its chats unanswered (the talker is not
                    # slow, whatever the CPU the test gets and however long a
                    # chat takes to come back through the cluster's Redis).
                    await talker.wait_until(
                        lambda n=n: len(talker.events) >= answered + 2 * (n - 100)
                    )
            await listener.wait_until(
                lambda: (
                    sum(isinstance(e, ChatNotify) for e in listener.events) >= count
                ),
                timeout=60,
            )
        slow = [e for e in events if "Slow consumer" in e.get("log_format", "")]
        self.assertEqual(len(slow), 1)
        self.assertEqual(slow[0]["peer"], f"127.0.0.1:{sleeper.local_port}")
        got = [e.message for e in listener.events if isinstance(e, ChatNotify)]
        self.assertEqual(got, [f"{n}".ljust(200, ".").encode() for n in range(count)])
        sleeper.transport.resumeProducing()  # type: ignore[union-attr]
        await sleeper.lost


class RedisLoginTests(ChatTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.redis = start_redis(self)

    async def start_redis_chat(self, **kwargs: object) -> int:
        return await self.start_chat(redis=RedisURL.parse(self.redis.url), **kwargs)

    async def test_login_checked_against_redis(self) -> None:
        self.redis.command("SET", "alice", "token-1")
        port = await self.start_redis_chat()
        a, b, c = await self.connect(port, 3)
        self.assertEqual(await self.login(a, "alice", "wrong"), 33)
        self.assertEqual(await self.login(b, "nobody", "token-1"), 33)
        self.assertEqual(await self.login(c, "alice", "token-1"), 0)
        self.assertEqual(await self.login(a, "alice", "token-1"), 31)

    async def test_many_logins_at_once(self) -> None:
        """
        Logins arriving together are checked together, each with its own
        answer.
        """
        for i in range(0, 300, 2):
            self.redis.command("SET", f"user{i}", f"pw{i}")
        port = await self.start_redis_chat(net=NetConfig(max_connections_per_ip=0))
        clients = await self.connect(port, 300)
        for i, client in enumerate(clients):
            client.send(login_request(f"user{i}", f"pw{i}"))
        await wait_all(clients, lambda c: len(c.events) >= 1)
        for i, client in enumerate(clients):
            self.assertEqual(client.events, [Response(LOGIN, 0 if i % 2 == 0 else 33)])

    async def test_without_scripting(self) -> None:
        """
        A Redis that refuses EVAL (an ACL without scripting) is asked with MGET.
        """
        self.redis.command("SET", "alice", "pw")
        self.redis.command("ACL", "SETUSER", "default", "-@scripting")
        self.addCleanup(self.redis.command, "ACL", "SETUSER", "default", "+@all")
        port = await self.start_redis_chat()
        a, b = await self.connect(port, 2)
        with capturedLogs() as events:
            self.assertEqual(await self.login(a, "alice", "pw"), 0)
        self.assertTrue(any("refused EVAL" in e["log_format"] for e in events))
        self.assertEqual(await self.login(b, "bob", "pw"), 33)

    async def test_key_prefix(self) -> None:
        self.redis.command("SET", "chat:alice", "pw")
        self.redis.command("SET", "alice", "other")
        port = await self.start_redis_chat(redis_key_prefix=b"chat:")
        [a] = await self.connect(port)
        self.assertEqual(await self.login(a, "alice", "pw"), 0)

    async def test_redis_down_and_back(self) -> None:
        """
        With Redis stopped a login gets 33 and one error line; users already
        in stay; once Redis is back logins work again without a restart.
        """
        self.redis.command("SET", "alice", "pw")
        self.redis.command("SET", "bob", "pw")
        port = await self.start_redis_chat(redis_timeout=1.0)
        alice, bob = await self.connect(port, 2)
        self.assertEqual(await self.login(alice, "alice", "pw"), 0)
        alice.send(enter_room_request(0))
        await alice.wait_events(2)
        self.redis.stop()
        with capturedLogs() as events:
            self.assertEqual(await self.login(bob, "bob", "pw"), 33)
        errors = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1)
        alice.send(chat_request("still chatting"))
        await alice.wait_events(4)
        self.assertEqual(alice.events[-1], ChatNotify(b"alice", b"still chatting"))
        self.redis.start()
        self.redis.command("SET", "bob", "pw")
        for _ in range(50):
            if await self.login(bob, "bob", "pw") == 0:
                break
            await deferLater(reactor, 0.2, lambda: None)
        else:
            self.fail("logins did not recover after Redis came back")

    async def test_slow_redis(self) -> None:
        self.redis.command("SET", "alice", "pw")
        port = await self.start_redis_chat(redis_timeout=0.5)
        [alice] = await self.connect(port)
        self.redis.command("CLIENT", "PAUSE", "1500", "ALL")
        with capturedLogs() as events:
            self.assertEqual(await self.login(alice, "alice", "pw"), 33)
        self.assertEqual(
            len([e for e in events if e["log_level"] == LogLevel.error]), 1
        )
        await deferLater(reactor, 1.5, lambda: None)
        self.assertEqual(await self.login(alice, "alice", "pw"), 0)

    async def test_disconnect_during_lookup_leaves_no_user(self) -> None:
        self.redis.command("SET", "alice", "pw")
        port = await self.start_redis_chat(redis_timeout=5.0)
        first, second = await self.connect(port, 2)
        self.redis.command("CLIENT", "PAUSE", "700", "ALL")
        first.send(login_request("alice", "pw"))
        await deferLater(reactor, 0.2, lambda: None)
        first.transport.loseConnection()  # type: ignore[union-attr]
        await first.lost
        await deferLater(reactor, 1.0, lambda: None)
        self.assertEqual(self.service.application.server.users, 0)
        self.assertEqual(await self.login(second, "alice", "pw"), 0)
        self.assertEqual(self.service.application.server.users, 1)


class LeaveTests(ChatTestCase):
    async def test_enter_leave_enter(self) -> None:
        port = await self.start_chat()
        [a] = await self.connect(port)
        await self.login(a, "a")
        a.send(enter_room_request(1) + leave_room_request() + enter_room_request(2))
        await a.wait_events(6)
        self.assertEqual(
            a.take()[1:],
            [
                Response(ENTER, 0),
                UserList(()),
                Response(PacketId.ROOM_LEAVE_RESPONSE, 0),
                Response(ENTER, 0),
                UserList(()),
            ],
        )


class TwoNodes:
    """
    The same tests on a cluster of two nodes.
    """

    nodes = 2


class ReferenceClientTwoNodesTests(TwoNodes, ReferenceClientTests):
    pass


class ManyUsersTwoNodesTests(TwoNodes, ManyUsersTests):
    pass


class LeaveTwoNodesTests(TwoNodes, LeaveTests):
    pass
