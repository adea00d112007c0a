# -*- test-case-name: tests.test_cluster -*-
"""
One node of a chat cluster: its share of the state kept in Redis.

The node is the source of truth for its own connections: Redis holds a copy
of who is logged in on it and which room each of its users is in, refreshed
by a heartbeat. Every node's heartbeat also sweeps the nodes whose heartbeat
expired (their members leave their rooms for everybody, their user ids are
free again); the sweep is one Lua script, so exactly one survivor does it.
When Redis comes back empty after a restart, each node puts back its own
users and memberships; when a node learns that the others declared it dead
(it was too slow), it drops its connections, since everybody was told they
left, and starts over.

With several Redis shards, each shard holds the rooms and the presence that
hash to it, and the heartbeat, the sweep and the re-registration run on each
shard for its part; a node joins only a cluster whose nodes were given the
same shards.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Protocol

from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatsvc.cluster import scripts
from chatsvc.cluster.channels import Channels
from chatsvc.cluster.config import ClusterConfig
from chatsvc.cluster.link import ClusterUnavailableError, RedisLink, ShardedLink
from chatsvc.cluster.stream import (
    Event,
    Member,
    StreamError,
    chat_event,
    header,
    member_record,
    parse_event,
    unique_id_field,
)


class NodeListener(Protocol):
    """
    What a node tells the chat rules, and asks of them.
    """

    def room_event(self, room: int, event: Event) -> None:
        """
        An event of C{room}'s stream, in the room's order.
        """

    def local_users(self) -> Iterable[tuple[bytes, tuple[int, Member] | None]]:
        """
        Every user logged in on this node, with its room and member record
        if it is in one.
        """

    def drop_users(self, user_ids: Iterable[bytes] | None) -> None:
        """
        Disconnect these local users (L{None}: every user) because the
        cluster no longer counts them as logged in here.
        """


class ClusterNode:
    """
    One node's presence, rooms and room streams in the cluster's Redis.

    @ivar listener: where room events go and local state comes from.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        config: ClusterConfig,
        listener: NodeListener,
    ) -> None:
        self.config = config
        self.listener = listener
        self.node = config.node_id.encode()
        self.link = ShardedLink(
            [RedisLink(reactor, url, timeout=config.timeout) for url in config.shards]
        )
        self.channels = Channels(self._route)
        self.refused: str | None = None
        self.on_refused: Callable[[str], None] = lambda reason: None
        self.swept: list[str] = []
        self.clock = reactor
        self._prefix = config.prefix.encode()
        self._rooms_by_channel: dict[bytes, int] = {}
        self._ids: deque[int] = deque()
        self._fetching = False
        self._id_waiters: list[Deferred[None]] = []
        self._unsent: dict[RedisLink, list[tuple[scripts.Script, tuple[Any, ...]]]]
        self._unsent = {shard: [] for shard in self.link.shards}
        self._in_flight: set[Deferred[Any]] = set()
        self._beating: set[RedisLink] = set()
        self._joined: set[RedisLink] = set()
        self._beat = LoopingCall(self._heartbeat)
        self._beat.clock = reactor
        for shard in self.link.shards:
            shard.on_command_up = self._heartbeat
            shard.on_subscriber_up = partial(self.channels.resubscribe, shard)
            shard.on_message = self._message

    def start(self) -> None:
        """
        Start the heartbeat: four beats per node timeout, each keeping the
        heartbeat key for three quarters of it, so a node that stops is swept
        within the node timeout, and one must miss two beats to be declared
        dead.
        """
        self._beat.start(self.config.node_timeout / 4, now=True)

    def _args(self, *args: Any) -> tuple[Any, ...]:
        return (self._prefix, self.node, *args)

    @property
    def _registered(self) -> bool:
        """
        Whether this node is registered with every shard.
        """
        return len(self._joined) == len(self.link.shards)

    def channel(self, room: int) -> bytes:
        """
        The channel of C{room}'s stream.
        """
        channel = self._prefix + b"room:%d:stream" % room
        self._rooms_by_channel[channel] = room
        return channel

    def _route(self, channel: bytes) -> RedisLink:
        return self.link.for_room(self._rooms_by_channel[channel])

    def _message(self, channel: bytes, data: bytes) -> None:
        room = self._rooms_by_channel.get(channel)
        if room is None or channel not in self.channels:
            return
        try:
            event = parse_event(data)
        except StreamError as e:
            self.log.warn(
                "Ignored a bad message on {channel!r}: {error}",
                channel=channel,
                error=e,
            )
            return
        self.listener.room_event(room, event)

    # Presence and unique ids

    async def claim(self, user_id: bytes) -> bool:
        """
        Log C{user_id} in for the whole cluster; L{False} if it is logged in
        on another node.

        @raise ClusterUnavailableError: if Redis is not reachable.
        """
        shard = self.link.for_user(user_id)
        await self._send_unsent(shard)
        return bool(await shard.run(scripts.CLAIM, *self._args(user_id)) == 1)

    def release(self, user_id: bytes) -> None:
        """
        Log C{user_id} out (later, if Redis is unreachable now).
        """
        self._background(self.link.for_user(user_id), scripts.RELEASE, user_id)

    async def unique_id(self) -> int:
        """
        A cluster-wide unique id, from this node's block of them (the next
        block is fetched when a quarter of this one is left).

        @raise ClusterUnavailableError: if a new block was needed and Redis is not
            reachable.
        """
        ids = self._ids
        if len(ids) * 4 <= self.config.id_block:
            self._fetch_ids()
        while not ids:
            waiter: Deferred[None] = Deferred()
            self._id_waiters.append(waiter)
            self._fetch_ids()
            await waiter
        return ids.popleft()

    def _fetch_ids(self) -> None:
        if self._fetching:
            return
        self._fetching = True
        count = self.config.id_block
        counter = self.link.shards[0]
        fetching = ensureDeferred(counter.run(scripts.UNIQUE_IDS, *self._args(count)))
        fetching.addBoth(self._fetched, count)

    def _fetched(self, result: Any, count: int) -> None:
        self._fetching = False
        waiters, self._id_waiters = self._id_waiters, []
        if isinstance(result, Failure):
            for waiter in waiters:
                waiter.errback(result)
            if not waiters and not result.check(ClusterUnavailableError):
                self.log.failure("Taking unique ids failed", result)
            return
        last = int(result)
        self._ids.extend(range(last - count + 1, last + 1))
        for waiter in waiters:
            waiter.callback(None)

    # Rooms

    async def enter(self, room: int, member: Member, capacity: int, token: int) -> bool:
        """
        Enter C{room} if it has fewer than C{capacity} members in the cluster;
        L{False} if it is full. On success the room's stream carries an
        L{EnterEvent} with this node and C{token}: the member belongs to the
        room from that event on.

        @raise ClusterUnavailableError: if Redis is not reachable.
        """
        shard = self.link.for_room(room)
        await self._send_unsent(shard)
        channel = self.channel(room)
        await self.channels.join(channel)
        try:
            entered = await shard.run(
                scripts.ENTER,
                *self._args(
                    room,
                    unique_id_field(member.unique_id),
                    member_record(member),
                    header(self.node, token),
                    capacity,
                ),
            )
        except BaseException:
            self.channels.release(channel)
            # The entry may have happened before the answer was lost.
            self._background(
                shard, scripts.LEAVE, room, unique_id_field(member.unique_id)
            )
            raise
        if entered != 1:
            self.channels.release(channel)
            if entered == -1:
                raise ClusterUnavailableError("this node was declared dead")
        return bool(entered == 1)

    def leave(self, room: int, unique_id: int) -> None:
        """
        Leave C{room} (in Redis later, if it is unreachable now); this node
        stops receiving the room's stream if that was its last member there.
        """
        self._background(
            self.link.for_room(room), scripts.LEAVE, room, unique_id_field(unique_id)
        )
        self.channels.release(self.channel(room))

    def publish(self, room: int, token: int, packet: bytes) -> Deferred[Any]:
        """
        Publish a chat notify on C{room}'s stream.

        @raise ClusterUnavailableError: (or fail with it) if Redis is not reachable.
        """
        return self.link.for_room(room).publish(
            self.channel(room), chat_event(self.node, token, packet)
        )

    # Keeping Redis in step

    def _background(self, shard: RedisLink, script: scripts.Script, *args: Any) -> None:
        full = self._args(*args)
        unsent = self._unsent[shard]
        if unsent:
            unsent.append((script, full))
            return
        running = ensureDeferred(shard.run(script, *full))
        self._in_flight.add(running)

        def done(result: Any) -> None:
            self._in_flight.discard(running)
            if isinstance(result, Failure):
                if result.check(ClusterUnavailableError):
                    unsent.append((script, full))
                else:
                    self.log.failure("{script} failed", result, script=script.name)

        running.addBoth(done)

    async def _send_unsent(self, shard: RedisLink) -> None:
        unsent = self._unsent[shard]
        while unsent:
            script, args = unsent[0]
            await shard.run(script, *args)
            del unsent[0]

    def _heartbeat(self) -> None:
        if self.refused is not None:
            return
        for shard in self.link.shards:
            if shard in self._beating:
                continue
            self._beating.add(shard)
            beating = ensureDeferred(self._beat_once(shard))
            beating.addErrback(lambda f: f.trap(ClusterUnavailableError))
            beating.addErrback(lambda f: self.log.failure("Heartbeat failed", f))
            self._in_flight.add(beating)
            beating.addBoth(self._beaten, shard, beating)

    def _beaten(self, result: Any, shard: RedisLink, beating: Deferred[Any]) -> None:
        self._beating.discard(shard)
        self._in_flight.discard(beating)

    async def _join(self, shard: RedisLink) -> None:
        """
        Register this node with C{shard}, sweeping what an earlier process
        with its id left there, unless the cluster's nodes were given other
        shards than this one.
        """
        layout = self.config.layout
        current = await shard.run(scripts.JOIN, *self._args(layout))
        if current != 1:
            self._refuse(
                f"this node was given the shards {layout} but the cluster's"
                f" nodes use {bytes(current).decode('utf-8', 'replace')}; every"
                " node must be given the same --cluster list, in the same order"
            )
            return
        timeout_ms = int(self.config.node_timeout * 750)
        await shard.run(scripts.RESET, *self._args("start", timeout_ms))
        self._joined.add(shard)

    def _refuse(self, reason: str) -> None:
        if self.refused is not None:
            return
        self.refused = reason
        if self._beat.running:
            self._beat.stop()
        self.log.error("Not joining the cluster: {reason}", reason=reason)
        self.on_refused(reason)

    async def _beat_once(self, shard: RedisLink) -> None:
        if shard not in self._joined:
            await self._join(shard)
            return
        timeout_ms = int(self.config.node_timeout * 750)
        reply = await shard.run(scripts.HEARTBEAT, *self._args(timeout_ms))
        state, *swept = reply if isinstance(reply, list) else [reply]
        for node in swept:
            name = node.decode("utf-8", "replace")
            self.swept.append(name)
            self.log.warn(
                "Node {node} stopped answering: its users left their rooms and"
                " were logged out{where}",
                node=name,
                where="" if len(self.link.shards) == 1 else f" on {shard.description}",
            )
        if state == -1:
            self.log.error(
                "The cluster declared this node ({node}) dead; disconnecting its"
                " users and starting over",
                node=self.config.node_id,
            )
            for unsent in self._unsent.values():
                unsent.clear()
            # Every shard sweeps what is left of this node when it joins again.
            self._joined.clear()
            self.listener.drop_users(None)
            await self._join(shard)
        elif state == 0:
            await self._register(shard)
        await self._send_unsent(shard)

    async def _register(self, shard: RedisLink) -> None:
        """
        Put this node's users and memberships on C{shard} (back) into Redis.
        """
        lost = []
        count = 0
        link = self.link
        for user_id, membership in list(self.listener.local_users()):
            mine = link.for_user(user_id) is shard
            args: tuple[Any, ...] = (user_id if mine else b"",)
            if membership is not None and link.for_room(membership[0]) is shard:
                room, member = membership
                args += (room, unique_id_field(member.unique_id), member_record(member))
            elif not mine:
                continue
            answer = await shard.run(scripts.REGISTER, *self._args(*args))
            if answer != 1:
                lost.append(user_id)
            count += 1
        if count:
            self.log.info(
                "Registered this node's {count} users with {redis}",
                count=count,
                redis=shard.description,
            )
        if lost:
            self.log.warn(
                "{count} users of this node logged in elsewhere while {redis} was"
                " away; disconnecting them here",
                count=len(lost),
                redis=shard.description,
            )
            self.listener.drop_users(lost)

    async def stop(self) -> None:
        """
        Stop the heartbeat, finish what is being written to Redis, take what
        this node still holds out of the cluster and close the link.
        """
        if self._beat.running:
            self._beat.stop()
        await DeferredList(list(self._in_flight))
        for shard in self.link.shards:
            if shard not in self._joined:
                continue
            try:
                await shard.run(scripts.RESET, *self._args("stop"))
            except ClusterUnavailableError as e:
                self.log.warn(
                    "Could not take this node out of {redis} ({error}); the"
                    " other nodes will within {timeout} s",
                    redis=shard.description,
                    error=e,
                    timeout=self.config.node_timeout,
                )
        await self.link.close()
