"""
Chat clusters over real TCP: nodes in this process sharing a real Redis,
clients spread over them.
"""

from __future__ import annotations

import re
from collections import Counter

from prometheus_client import generate_latest
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.internet.task import deferLater
from twisted.logger import capturedLogs

from chatsvc.cluster.config import ClusterConfig
from chatsvc.cluster.link import shard_of
from chatsvc.cluster.node import ClusterNode
from chatsvc.content.chat import ChatConfig
from chatsvc.host.redis_login import RedisURL
from chatsvc.host.services import ChatService, chat_service
from chatsvc.net.config import NetConfig
from chatsvc.protocol import (
    ChatNotify,
    NewUser,
    PacketId,
    Response,
    UserLeft,
    UserList,
    chat_request,
    enter_room_request,
    leave_room_request,
    login_request,
)
from tests.integration.base import LOOPBACK, IntegrationTestCase, wait_all
from tests.support import (
    ExternalRedis,
    PacketClient,
    RedisServer,
    eventually,
    reactor,
    start_redis,
)

LOGIN = PacketId.LOGIN_RESPONSE
ENTER = PacketId.ROOM_ENTER_RESPONSE
CHAT = PacketId.ROOM_CHAT_RESPONSE


async def pause(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


class ClusterTestCase(IntegrationTestCase):
    """
    Starts nodes of one cluster on a Redis of the test's own, or on
    C{shards} of them.
    """

    shards = 1

    def setUp(self) -> None:
        super().setUp()
        self.redises = [start_redis(self, shard) for shard in range(self.shards)]
        self.redis = self.redises[0]
        self.ports: list[int] = []
        self.services: list[ChatService] = []

    async def start_nodes(
        self, count: int, chat: ChatConfig | None = None, node_timeout: float = 3.0
    ) -> list[int]:
        for _ in range(count):
            service = chat_service(
                LOOPBACK,
                NetConfig(),
                chat or ChatConfig(chat_rate=0),
                reactor=reactor,
                cluster=ClusterConfig(
                    self.cluster_url(),
                    f"node-{len(self.ports) + 1}",
                    node_timeout=node_timeout,
                ),
            )
            self.ports.append(await self.start(service))
            self.services.append(service)
        for node in self.nodes():
            await eventually(lambda n=node: n._registered)
        return self.ports

    def cluster_url(self) -> RedisURL | tuple[RedisURL, ...]:
        urls = tuple(RedisURL.parse(redis.url) for redis in self.redises)
        return urls[0] if len(urls) == 1 else urls

    def shard(self, key: bytes) -> RedisServer | ExternalRedis:
        """
        The Redis holding C{key} (a room number or a user id).
        """
        return self.redises[shard_of(key, len(self.redises))]

    def command_counts(self) -> Counter[str]:
        """
        The commands every Redis server of the cluster ran so far.
        """
        servers = {redis.server: redis for redis in self.redises}
        counts: Counter[str] = Counter()
        for redis in servers.values():
            counts.update(command_counts(redis.command("INFO", "commandstats")))
        return counts

    async def spread(self, count: int) -> list[PacketClient]:
        """
        Connect C{count} clients, alternating between the nodes.
        """
        clients = []
        for i in range(count):
            [client] = await self.connect(self.ports[i % len(self.ports)])
            clients.append(client)
        return clients

    async def request(self, client: PacketClient, data: bytes, answer: int) -> int:
        """
        Send C{data}; return the result of the next response C{answer}.
        """
        count = len(client.events)
        client.send(data)

        def answered() -> bool:
            return any(
                isinstance(e, Response) and e.packet_id == answer
                for e in client.events[count:]
            )

        await client.wait_until(answered)
        [result] = [
            e.result
            for e in client.events[count:]
            if isinstance(e, Response) and e.packet_id == answer
        ]
        return result

    async def login(self, client: PacketClient, user: str) -> int:
        return await self.request(client, login_request(user, "pw"), LOGIN)

    def nodes(self) -> list[ClusterNode]:
        return [s.cluster.node for s in self.services if s.cluster is not None]

    async def enter(self, client: PacketClient, user: str, room: int = 0) -> None:
        self.assertEqual(
            await self.request(client, login_request(user, "pw"), LOGIN), 0
        )
        self.assertEqual(await self.request(client, enter_room_request(room), ENTER), 0)


def chats(client: PacketClient) -> list[bytes]:
    return [e.message for e in client.events if isinstance(e, ChatNotify)]


def notifies(client: PacketClient) -> list[object]:
    return [e for e in client.events if isinstance(e, (NewUser, UserLeft))]


class ClusterBasicsTests(ClusterTestCase):
    """
    The basics, also run on the IOCP reactor.
    """

    async def test_two_nodes_one_room_chat_both_ways(self) -> None:
        await self.start_nodes(2)
        alice, bob = await self.spread(2)
        await self.enter(alice, "alice")
        await self.enter(bob, "bob")
        await alice.wait_until(
            lambda: any(isinstance(e, NewUser) for e in alice.events)
        )
        self.assertEqual(await self.request(alice, chat_request("hi bob"), CHAT), 0)
        self.assertEqual(await self.request(bob, chat_request("hi alice"), CHAT), 0)
        await wait_all([alice, bob], lambda c: len(chats(c)) == 2)
        self.assertEqual(chats(alice), [b"hi bob", b"hi alice"])
        self.assertEqual(chats(bob), [b"hi bob", b"hi alice"])
        # The sender's response comes before its own notify.
        kinds = [
            "response" if isinstance(e, Response) and e.packet_id == CHAT else "notify"
            for e in alice.events
            if isinstance(e, ChatNotify)
            or (isinstance(e, Response) and e.packet_id == CHAT)
        ]
        self.assertEqual(kinds[:2], ["response", "notify"])

    async def test_login_is_cluster_wide(self) -> None:
        await self.start_nodes(2)
        first, second = await self.spread(2)
        self.assertEqual(await self.login(first, "al"), 0)
        self.assertEqual(await self.login(second, "al"), 31)
        first.transport.loseConnection()  # type: ignore[union-attr]
        await first.lost
        await pause(0.2)
        self.assertEqual(await self.login(second, "al"), 0)


class ClusterMetricsTests(ClusterTestCase):
    async def test_metrics_and_health(self) -> None:
        await self.start_nodes(2)
        alice, bob = await self.spread(2)
        await self.enter(alice, "alice")
        await self.enter(bob, "bob")
        self.assertEqual(await self.request(alice, chat_request("hi"), CHAT), 0)
        await bob.wait_until(lambda: b"hi" in chats(bob))
        service = self.services[0]
        metrics = generate_latest(service.registry).decode()
        for line in (
            "chatsvc_cluster_connected 1.0",
            "chatsvc_cluster_channels 1.0",
            "chatsvc_cluster_messages_out_total 1.0",
            "chatsvc_cluster_publish_seconds_count 1.0",
        ):
            self.assertIn(line, metrics)
        self.assertRegex(metrics, r"chatsvc_cluster_messages_in_total [1-9]")
        node = self.nodes()[0]
        self.assertIsNone(node.link.health())
        self.redis.stop()
        await eventually(lambda: not node.link.connected)
        self.assertIn("not reachable", node.link.health() or "")
        metrics = generate_latest(service.registry).decode()
        self.assertIn("chatsvc_cluster_connected 0.0", metrics)
        self.redis.start()
        await eventually(lambda: node.link.connected)


class ClusterRoomTests(ClusterTestCase):
    async def test_capacity_race_across_three_nodes(self) -> None:
        await self.start_nodes(3)
        clients = await self.spread(5)
        for i, client in enumerate(clients):
            self.assertEqual(
                await self.request(client, login_request(f"u{i}", "pw"), LOGIN), 0
            )
        results = await gatherResults(
            [
                ensureDeferred(self.request(c, enter_room_request(3), ENTER))
                for c in clients
            ]
        )
        self.assertEqual(sorted(results), [0, 0, 0, 0, 54])

    async def test_members_and_notifies_across_nodes(self) -> None:
        await self.start_nodes(2)
        alice, bob, carol = await self.spread(3)
        await self.enter(alice, "alice")
        await self.enter(bob, "bob")
        await self.enter(carol, "carol")
        [listing] = [e for e in carol.events if isinstance(e, UserList)]
        self.assertEqual({user for _, user in listing.users}, {b"alice", b"bob"})
        await alice.wait_until(lambda: len(notifies(alice)) == 2)
        self.assertEqual(
            [e.user_id for e in notifies(alice) if isinstance(e, NewUser)],
            [b"bob", b"carol"],
        )
        ids = {user: uid for uid, user in listing.users}
        self.assertEqual(
            await self.request(bob, leave_room_request(), PacketId.ROOM_LEAVE_RESPONSE),
            0,
        )
        for client in (alice, carol):
            await client.wait_until(lambda c=client: UserLeft(ids[b"bob"]) in c.events)
        self.assertNotIn(UserLeft(ids[b"bob"]), bob.events)

    async def test_one_order_for_every_member(self) -> None:
        """
        Three nodes, two members on each, every member sending: all six see
        the same sequence of chats.
        """
        await self.start_nodes(3, ChatConfig(room_capacity=6, chat_rate=0))
        clients = await self.spread(6)
        for i, client in enumerate(clients):
            await self.enter(client, f"m{i}")
        for round_ in range(10):
            for i, client in enumerate(clients):
                client.send(chat_request(f"{round_}:{i}"))
            await pause(0.01)
        await wait_all(clients, lambda c: len(chats(c)) == 60)
        first = chats(clients[0])
        for client in clients[1:]:
            self.assertEqual(chats(client), first)
        # Each sender's own messages keep the order it sent them in.
        for i in range(6):
            mine = [m for m in first if m.endswith(b":%d" % i)]
            self.assertEqual(mine, [b"%d:%d" % (r, i) for r in range(10)])

    async def test_one_publish_per_chat(self) -> None:
        """
        A chat costs one PUBLISH and nothing else, however many members and
        nodes deliver it.
        """
        await self.start_nodes(2)
        clients = await self.spread(4)
        for i, client in enumerate(clients):
            await self.enter(client, f"m{i}")
        before = self.command_counts()
        for i in range(10):
            self.assertEqual(
                await self.request(clients[0], chat_request(f"c{i}"), CHAT), 0
            )
        await wait_all(clients, lambda c: len(chats(c)) == 10)
        after = self.command_counts()
        delta = {k: after[k] - before.get(k, 0) for k in after}
        self.assertEqual(delta.get("publish"), 10)
        others = {
            k: v
            for k, v in delta.items()
            if v and k not in ("publish", "evalsha", "eval", "info", "select")
        }
        self.assertEqual(others, {})


def command_counts(info: bytes) -> dict[str, int]:
    return {
        name: int(calls)
        for name, calls in re.findall(rb"cmdstat_(\w+):calls=(\d+)", info)
        for name in [name.decode()]
    }


class ClusterFailureTests(ClusterTestCase):
    async def test_redis_down_chat_fails_and_nobody_gets_it(self) -> None:
        await self.start_nodes(2)
        alice, bob = await self.spread(2)
        await self.enter(alice, "alice")
        await self.enter(bob, "bob")
        with capturedLogs() as events:
            for redis in self.redises:
                redis.stop()
            await eventually(lambda: not any(n.link.connected for n in self.nodes()))
            self.assertEqual(await self.request(alice, chat_request("lost"), CHAT), 62)
            [carol] = await self.spread(1)
            self.assertEqual(await self.login(carol, "carol"), 33)
            await pause(2.5)
        self.assertNotIn(b"lost", chats(bob) + chats(alice))
        self.assertFalse(alice.lost.called or bob.lost.called)
        down = [e for e in events if "is down" in e.get("log_format", "")]
        self.assertEqual(len(down), 2 * self.shards)  # one per node and shard

    async def test_redis_restarted_empty(self) -> None:
        ann_key, room_key = "chatsvc:user:ann", "chatsvc:room:0"
        ann_shard, room_shard = self.shard(b"ann"), self.shard(b"0")
        await self.start_nodes(2)
        alice, bob, ann = await self.spread(3)
        await self.enter(alice, "alice")
        await self.enter(bob, "bob")
        self.assertEqual(await self.login(ann, "ann"), 0)
        for redis in self.redises:
            redis.stop()
        await eventually(lambda: not any(n.link.connected for n in self.nodes()))
        for redis in self.redises:
            if not isinstance(redis, RedisServer):
                redis.command("FLUSHDB")
            redis.start()
        await eventually(lambda: all(n.link.connected for n in self.nodes()))
        await eventually(lambda: b"node-1" in ann_shard.command("GET", ann_key))
        # No ghosts, no duplicates: the same two members, ids still taken.
        [dup] = await self.spread(1)
        self.assertEqual(await self.login(dup, "alice"), 31)
        self.assertEqual(await self.login(dup, "ann"), 31)
        await eventually(lambda: room_shard.command("HLEN", room_key) == b":2\r\n")
        before = len(notifies(alice))
        await eventually(
            lambda: all(
                len(s.cluster.node.channels._confirmed) == 1 for s in self.services
            )  # type: ignore[union-attr]
        )
        self.assertEqual(await self.request(alice, chat_request("back"), CHAT), 0)
        await wait_all([alice, bob], lambda c: b"back" in chats(c))
        self.assertEqual(len(notifies(alice)), before)
        self.assertEqual(await self.request(ann, enter_room_request(0), ENTER), 0)
        [listing] = [e for e in ann.events if isinstance(e, UserList)]
        self.assertEqual(sorted(user for _, user in listing.users), [b"alice", b"bob"])


class ShardedClusterBasicsTests(ClusterBasicsTests):
    """
    The basics on a cluster of two Redis shards.
    """

    shards = 2


class ShardedClusterRoomTests(ClusterRoomTests):
    """
    Rooms across nodes on a cluster of two Redis shards.
    """

    shards = 2


class ShardedClusterFailureTests(ClusterFailureTests):
    """
    Redis down and restarted empty, every shard at once.
    """

    shards = 2
