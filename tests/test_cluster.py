"""
Cluster nodes against a real Redis: presence, rooms with capacity, one
ordered stream per room, the dead-node sweep and Redis restarting empty.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from types import SimpleNamespace

from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, capturedLogs
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatsvc.cluster import ClusterConfig, ClusterNode, ClusterUnavailableError
from chatsvc.cluster.link import RedisLink, _Subscriber, shard_of
from chatsvc.cluster.stream import ChatEvent, EnterEvent, Event, LeaveEvent, Member
from chatsvc.host.options import ChatOptions
from chatsvc.host.redis_login import RedisURL
from tests.support import RedisServer, eventually, reactor, start_redis


class SubscriberReadingTests(SynchronousTestCase):
    """
    What the subscriber connection reads, in pieces of any size: a channel's
    messages go to the link in order, after each read the link hears that
    the read is done, and other replies answer the commands waiting.
    """

    def test_messages_and_replies(self) -> None:
        messages: list[tuple[bytes, bytes]] = []
        reads = []
        link = SimpleNamespace(
            _message_received=lambda channel, data: messages.append((channel, data)),
            on_messages_end=lambda: reads.append(len(messages)),
        )
        subscriber = _Subscriber(charset=None, convertNumbers=False)
        subscriber.factory = SimpleNamespace(link=link)
        subscribed = subscriber.replyQueue.get()
        data = b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n" + b"".join(
            b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$%d\r\n%s\r\n" % (len(m), m)
            for m in (b"one", b"two\r\n", b"")
        )
        for start in range(0, len(data), 7):
            subscriber.dataReceived(data[start : start + 7])
        self.assertEqual(messages, [(b"a", b"one"), (b"a", b"two\r\n"), (b"a", b"")])
        self.assertEqual(len(reads), len(range(0, len(data), 7)))
        self.assertEqual(self.successResultOf(subscribed), [b"subscribe", b"a", 1])


class Listener:
    """
    The chat rules of a test node: records events, holds local users.
    """

    def __init__(self) -> None:
        self.events: list[tuple[int, Event]] = []
        self.users: dict[bytes, tuple[int, Member] | None] = {}
        self.dropped: list[bytes | None] = []

    def room_event(self, room: int, event: Event) -> None:
        self.events.append((room, event))

    def local_users(self) -> Iterable[tuple[bytes, tuple[int, Member] | None]]:
        return list(self.users.items())

    def drop_users(self, user_ids: Iterable[bytes] | None) -> None:
        if user_ids is None:
            self.dropped.append(None)
            self.users.clear()
        else:
            for user_id in user_ids:
                self.dropped.append(user_id)
                del self.users[user_id]


class ClusterTestCase(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.redis = start_redis(self)
        self.prefix = "t:"

    async def node(self, name: str, node_timeout: float = 3.0) -> ClusterNode:
        config = ClusterConfig(
            RedisURL.parse(self.redis.url),
            name,
            node_timeout=node_timeout,
            prefix=self.prefix,
            id_block=10,
        )
        node = ClusterNode(reactor, config, Listener())
        node.start()
        self.addCleanup(node.stop)
        await eventually(lambda: node._registered)
        return node

    def members(self, room: int) -> int:
        reply = self.redis.command("HLEN", f"{self.prefix}room:{room}")
        return int(reply[1:].split(b"\r\n")[0])

    def owner(self, user: str) -> bytes:
        return self.redis.command("GET", f"{self.prefix}user:{user}")


def listener(node: ClusterNode) -> Listener:
    assert isinstance(node.listener, Listener)
    return node.listener


class PresenceTests(ClusterTestCase):
    async def test_one_login_per_user_in_the_cluster(self) -> None:
        a, b = await self.node("a"), await self.node("b")
        self.assertTrue(await a.claim(b"alice"))
        self.assertFalse(await b.claim(b"alice"))
        a.release(b"alice")
        await eventually(lambda: self.owner("alice") == b"$-1\r\n")
        self.assertTrue(await b.claim(b"alice"))

    async def test_unique_ids_across_nodes(self) -> None:
        a, b = await self.node("a"), await self.node("b")
        ids = []
        for _ in range(25):
            ids.append(await a.unique_id())
            ids.append(await b.unique_id())
        self.assertEqual(len(set(ids)), 50)
        self.assertGreater(min(ids), int(time.time() * 1_000_000) - 60_000_000)

    async def test_unique_ids_are_not_reused_after_redis_restarts(self) -> None:
        if not isinstance(self.redis, RedisServer):
            self.skipTest("needs a Redis of the test's own")
        a = await self.node("a")
        first = await a.unique_id()
        self.redis.stop()
        await eventually(lambda: not a.link.connected)
        self.redis.start()
        await eventually(lambda: a.link.connected)
        a._ids.clear()
        self.assertGreater(await a.unique_id(), first)


class RoomTests(ClusterTestCase):
    async def test_capacity_holds_across_nodes(self) -> None:
        nodes = [await self.node(name) for name in "abc"]
        entries = [
            nodes[i % 3].enter(7, Member(i + 1, b"user%d" % i), 4, i) for i in range(5)
        ]
        results = await gatherResults([ensureDeferred(e) for e in entries])
        self.assertEqual(sorted(results), [False, True, True, True, True])
        self.assertEqual(self.members(7), 4)

    async def test_one_order_for_every_node(self) -> None:
        """
        Chats from three nodes, interleaved with an entry and a leave, reach
        every node in the same order.
        """
        a, b, c = [await self.node(name) for name in "abc"]
        for i, node in enumerate((a, b, c)):
            self.assertTrue(await node.enter(1, Member(i + 1, b"u%d" % i), 10, i))
        for round_ in range(20):
            for i, node in enumerate((a, b, c)):
                node.publish(1, round_, b"chat %d from %d" % (round_, i))
            if round_ == 10:
                await b.enter(1, Member(4, b"u3"), 10, 99)
                b.leave(1, 4)
        await eventually(
            lambda: all(
                sum(isinstance(e, ChatEvent) for _, e in listener(n).events) == 60
                for n in (a, b, c)
            )
        )
        sequences = [listener(n).events[-62:] for n in (a, b, c)]
        self.assertEqual(sequences[0], sequences[1])
        self.assertEqual(sequences[0], sequences[2])
        kinds = [type(event) for _, event in sequences[0]]
        self.assertEqual(kinds.count(EnterEvent), 1)
        self.assertEqual(kinds.count(LeaveEvent), 1)

    async def test_enter_event_carries_the_members_before(self) -> None:
        a, b = await self.node("a"), await self.node("b")
        await a.enter(3, Member(10, b"alice"), 4, 1)
        await b.enter(3, Member(20, b"bob"), 4, 5)
        await eventually(lambda: len(listener(b).events) == 1)
        [(room, event)] = listener(b).events
        self.assertEqual(
            (room, event),
            (3, EnterEvent(b"b", 5, Member(20, b"bob"), [Member(10, b"alice")])),
        )

    async def test_subscribed_only_while_members_are_local(self) -> None:
        a, b = await self.node("a"), await self.node("b")
        channel = f"{self.prefix}room:2:stream"

        def subscribers() -> int:
            reply = self.redis.command("PUBSUB", "NUMSUB", channel)
            return int(reply.split(b"\r\n")[-2][1:])

        await a.enter(2, Member(1, b"x"), 4, 1)
        await a.enter(2, Member(2, b"y"), 4, 2)
        self.assertEqual(subscribers(), 1)
        await b.enter(2, Member(3, b"z"), 4, 3)
        self.assertEqual(subscribers(), 2)
        a.leave(2, 1)
        self.assertEqual(subscribers(), 2)
        a.leave(2, 2)
        await eventually(lambda: subscribers() == 1)
        before = len(listener(a).events)
        await b.publish(2, 1, b"hello")
        await eventually(lambda: len(listener(b).events) >= 4)
        self.assertEqual(len(listener(a).events), before)

    async def test_commands_leave_at_once(self) -> None:
        """
        A command goes to Redis's socket as it is made, not on the reactor's
        next pass: a node publishes every chat.
        """
        link = RedisLink(reactor, RedisURL.parse(self.redis.url))
        self.addCleanup(lambda: ensureDeferred(link.close()))
        await eventually(lambda: link.connected)
        for factory, sent in (
            (link._commands, link.publish(b"t:room", b"now")),
            (link._subscriber, link.subscribe(b"t:room")),
        ):
            [connection] = factory.pool
            transport = connection.transport
            self.assertEqual((transport._tempDataLen, transport.dataBuffer), (0, b""))
            await sent

    async def test_publish_fails_when_redis_stops_answering(self) -> None:
        """
        A Redis that keeps its connections but answers nothing: a publish
        fails once it waited the link's timeout, it does not wait for ever.
        """
        link = RedisLink(
            reactor, RedisURL.parse(self.redis.url), timeout=0.5, reconnect_delay=0.2
        )
        self.addCleanup(lambda: ensureDeferred(link.close()))
        await eventually(lambda: link.connected)
        await link.publish(b"t:room", b"answered")
        self.redis.pause()
        self.addCleanup(self.redis.resume)
        started = time.monotonic()
        with self.assertRaises(ClusterUnavailableError):
            await link.publish(b"t:room", b"unanswered")
        self.assertLess(time.monotonic() - started, 0.5 + 0.2 + 1.0)

    async def test_publish_fails_while_redis_is_down(self) -> None:
        a = await self.node("a")
        await a.enter(1, Member(1, b"x"), 4, 1)
        with capturedLogs() as events:
            self.redis.stop()
            await eventually(lambda: not a.link.connected)
            with self.assertRaises(ClusterUnavailableError):
                await a.publish(1, 2, b"lost")
            with self.assertRaises(ClusterUnavailableError):
                await a.claim(b"bob")
            await deferLater(reactor, 2.5, lambda: None)
            self.redis.start()
            await eventually(lambda: a.link.connected)
            await deferLater(reactor, 1.5, lambda: None)
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        infos = [e for e in events if "is up" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertEqual(len(infos), 1)


class FailureTests(ClusterTestCase):
    async def test_dead_node_is_swept_exactly_once(self) -> None:
        a, b, c = [await self.node(name) for name in "abc"]
        listener(c).users[b"carol"] = (5, Member(3, b"carol"))
        self.assertTrue(await c.claim(b"carol"))
        await a.enter(5, Member(1, b"alice"), 4, 1)
        await b.enter(5, Member(2, b"bob"), 4, 1)
        await c.enter(5, Member(3, b"carol"), 4, 1)
        await eventually(lambda: len(listener(a).events) == 3)
        # c dies: no more heartbeats, no goodbye.
        c._beat.stop()
        await c.link.close()
        started = time.monotonic()
        await eventually(lambda: bool(a.swept or b.swept), timeout=10)
        # Within the node timeout, and a second for a busy machine.
        self.assertLess(time.monotonic() - started, c.config.node_timeout + 1)
        await deferLater(reactor, 1.0, lambda: None)
        self.assertEqual(a.swept + b.swept, ["c"])
        for node in (a, b):
            self.assertEqual(listener(node).events[-1], (5, LeaveEvent(3)))
            self.assertEqual(listener(node).events.count((5, LeaveEvent(3))), 1)
        self.assertTrue(await a.claim(b"carol"))
        self.assertEqual(self.members(5), 2)

    async def test_slow_node_declared_dead_drops_its_users(self) -> None:
        a, b = await self.node("a"), await self.node("b")
        listener(b).users[b"bob"] = (5, Member(2, b"bob"))
        await b.claim(b"bob")
        await b.enter(5, Member(2, b"bob"), 4, 1)
        b._beat.stop()
        await eventually(lambda: a.swept == ["b"], timeout=10)
        self.assertEqual(self.members(5), 0)
        b._beat.start(b.config.node_timeout / 4)
        await eventually(lambda: listener(b).dropped == [None])
        await eventually(lambda: b._registered)
        self.assertEqual(self.members(5), 0)
        self.assertTrue(await a.claim(b"bob"))

    async def test_redis_restarted_empty_gets_every_node_back(self) -> None:
        if not isinstance(self.redis, RedisServer):
            self.skipTest("needs a Redis of the test's own")
        a, b = await self.node("a"), await self.node("b")
        for node, user, uid in ((a, b"alice", 1), (b, b"bob", 2)):
            listener(node).users[user] = (4, Member(uid, user))
            await node.claim(user)
            await node.enter(4, Member(uid, user), 4, uid)
        listener(a).users[b"ann"] = None
        await a.claim(b"ann")
        self.redis.stop()
        self.redis.start()
        self.assertEqual(self.members(4), 0)
        await eventually(lambda: self.members(4) == 2)
        await eventually(lambda: self.owner("ann") == b"$1\r\na\r\n")
        self.assertFalse(await b.claim(b"alice"))
        self.assertFalse(await a.claim(b"bob"))
        await eventually(lambda: a.link.connected and b.link.connected)
        await eventually(lambda: len(b.channels) == 1 and bool(b.channels._confirmed))
        await a.publish(4, 9, b"after")
        after = (4, ChatEvent(b"a", 9, b"after"))
        await eventually(lambda: after in listener(b).events)
        self.assertEqual(listener(a).dropped + listener(b).dropped, [])


class ShardTests(TestCase):
    """
    A cluster on two Redis shards.
    """

    timeout = 60

    def setUp(self) -> None:
        self.redises = [start_redis(self, shard) for shard in range(2)]
        self.urls = tuple(RedisURL.parse(redis.url) for redis in self.redises)
        self.prefix = "t:"

    async def node(
        self, name: str, urls: tuple[RedisURL, ...] | None = None, join: bool = True
    ) -> ClusterNode:
        config = ClusterConfig(
            urls or self.urls, name, node_timeout=2.0, prefix=self.prefix, id_block=10
        )
        node = ClusterNode(reactor, config, Listener())
        node.start()
        self.addCleanup(node.stop)
        if join:
            await eventually(lambda: node._registered)
        return node

    def holders(self, key: str) -> list[int]:
        """
        The shards that hold C{key}.
        """
        return [
            i
            for i, redis in enumerate(self.redises)
            if redis.command("EXISTS", self.prefix + key) == b":1\r\n"
        ]

    async def test_rooms_and_presence_spread_over_the_shards(self) -> None:
        a = await self.node("a")
        for i in range(10):
            user = b"user%d" % i
            self.assertTrue(await a.claim(user))
            self.assertTrue(await a.enter(i, Member(i + 1, user), 4, i))
        users = [self.holders(f"user:user{i}") for i in range(10)]
        rooms = [self.holders(f"room:{i}") for i in range(10)]
        self.assertEqual(users, [[shard_of(b"user%d" % i, 2)] for i in range(10)])
        self.assertEqual(rooms, [[shard_of(b"%d" % i, 2)] for i in range(10)])
        self.assertEqual({shard for [shard] in users + rooms}, {0, 1})
        # Each room's stream is published on its own shard only.
        await eventually(lambda: len(listener(a).events) == 10)
        self.assertEqual([room for room, _ in listener(a).events], list(range(10)))

    async def test_node_with_other_shards_does_not_join(self) -> None:
        a = await self.node("a")
        refusals: list[str] = []
        for urls in (self.urls[:1], self.urls[::-1]):
            with capturedLogs() as events:
                other = await self.node("b", urls, join=False)
                other.on_refused = refusals.append
                await eventually(lambda o=other: o.refused is not None)
            self.assertFalse(other._registered)
            self.assertIn("same --cluster list", other.refused or "")
            [error] = [e for e in events if e["log_level"] == LogLevel.error]
            self.assertIn("Not joining the cluster", error["log_format"])
            await other.stop()
        self.assertEqual(len(refusals), 2)
        # Once the cluster is empty, it may be restarted on other shards.
        await a.stop()
        await self.node("c", self.urls[:1])

    async def test_dead_node_is_swept_on_every_shard(self) -> None:
        a, b = await self.node("a"), await self.node("b")
        rooms = [0, 4]  # one on each shard
        users = [b"user0", b"user4"]  # one on each shard
        self.assertEqual(sorted(shard_of(b"%d" % r, 2) for r in rooms), [0, 1])
        self.assertEqual(sorted(shard_of(u, 2) for u in users), [0, 1])
        for i, (room, user) in enumerate(zip(rooms, users, strict=True)):
            await a.enter(room, Member(10 + i, b"a%d" % i), 4, i)
            self.assertTrue(await b.claim(user))
            await b.enter(room, Member(20 + i, user), 4, i)
        b._beat.stop()
        await b.link.close()
        await eventually(lambda: len(a.swept) == 2, timeout=10)
        self.assertEqual(a.swept, ["b", "b"])
        for room, uid in zip(rooms, (20, 21), strict=True):
            await eventually(
                lambda r=room, u=uid: (r, LeaveEvent(u)) in listener(a).events
            )
        for user in users:
            self.assertTrue(await a.claim(user))

    def test_shards_in_the_options(self) -> None:
        first, second = (redis.url for redis in self.redises)
        options = ChatOptions()
        options.parseOptions(["--cluster", f"{first}, {second}"])
        assert options.cluster is not None
        self.assertEqual(options.cluster.shards, self.urls)
        self.assertEqual(options.cluster.layout, f"{first},{second}")
        with self.assertRaises(usage.UsageError) as raised:
            ChatOptions().parseOptions(["--cluster", f"{first},{first}"])
        self.assertIn("names one Redis twice", str(raised.exception))
