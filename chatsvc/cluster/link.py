# -*- test-case-name: tests.test_cluster -*-
"""
A node's two connections to the cluster's Redis: one for commands and
scripts, one subscribed to the channels of the rooms the node has members in.

Both reconnect by themselves (within C{reconnect_delay} seconds once Redis is
back). While the command connection is down, every command fails at once
with L{ClusterUnavailableError} instead of waiting: the chat rules turn that into
a result code for the user. The link logs one warning when Redis goes away
and one line when it is back, not one per retry.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import txredisapi
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatsvc.cluster.scripts import Script
from chatsvc.host.redis_login import RedisLogin, RedisURL
from chatsvc.net.sendqueue import transport_writers


class ClusterUnavailableError(Exception):
    """
    The cluster's Redis is not reachable (or did not answer in time).
    """


class LinkStats:
    """
    What went over the link, for the metrics exporter.
    """

    __slots__ = ("messages_in", "messages_out", "publish_seconds")

    def __init__(self) -> None:
        self.messages_in = 0
        self.messages_out = 0
        self.publish_seconds: Callable[[float], None] | None = None


class _DirectWrites:
    """
    A Redis connection whose commands leave on its socket at once when its
    transport holds nothing (L{transport_writers}), instead of waiting for
    the reactor's next pass: every chat a node publishes is a command.
    """

    transport: Any

    def connectionMade(self) -> Any:
        transport = self.transport
        transport.write = transport_writers(transport).write
        return super().connectionMade()  # type: ignore[misc]


class _Commands(_DirectWrites, txredisapi.RedisProtocol):  # type: ignore[misc]
    pass


class _CommandFactory(txredisapi.RedisFactory):  # type: ignore[misc]
    protocol = _Commands
    link: RedisLink

    def addConnection(self, conn: Any) -> None:
        super().addConnection(conn)
        if conn in self.pool:
            self.link._command_up()


class _Subscriber(_DirectWrites, txredisapi.SubscriberProtocol):  # type: ignore[misc]
    """
    The subscriber connection: a channel's messages, nearly all it reads,
    go from hiredis's reader straight to the link; other replies take
    txredisapi's way.
    """

    factory: _SubscriberFactory

    def messageReceived(self, pattern: Any, channel: bytes, message: bytes) -> None:
        self.factory.link._message_received(channel, message)

    def dataReceived(self, data: bytes, unpause: bool = False) -> None:
        link = self.factory.link
        received = link._message_received
        reader = self._reader
        reader.feed(data)
        reply = reader.gets()
        while reply is not False:
            if type(reply) is list and len(reply) == 3 and reply[0] == b"message":
                received(reply[1], reply[2])
            else:
                self.replyReceived(
                    self.handleTransactionData(self.tryConvertData(reply))
                )
            reply = reader.gets()
        link.on_messages_end()


class _SubscriberFactory(_CommandFactory):
    protocol = _Subscriber

    def addConnection(self, conn: Any) -> None:
        txredisapi.RedisFactory.addConnection(self, conn)
        if conn in self.pool:
            self.link._subscriber_up()


class RedisLink:
    """
    The command and subscriber connections of one node.

    @ivar on_command_up: called each time the command connection is (again)
        ready.
    @ivar on_subscriber_up: called each time the subscriber connection is
        (again) ready; its subscriptions are gone and must be renewed.
    @ivar on_message: called with the channel and the message of every
        message received on a subscribed channel.
    @ivar on_messages_end: called after the messages of one read.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        url: RedisURL,
        *,
        timeout: float = 2.0,
        reconnect_delay: float = 1.0,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.description = f"cluster Redis at {url}"
        self._reactor = reactor
        self.stats = LinkStats()
        self.on_command_up: Callable[[], None] = lambda: None
        self.on_subscriber_up: Callable[[], None] = lambda: None
        self.on_message: Callable[[bytes, bytes], None] = lambda channel, data: None
        self.on_messages_end: Callable[[], None] = lambda: None
        self._commands = self._factory(_CommandFactory, reconnect_delay)
        self._subscriber = self._factory(_SubscriberFactory, reconnect_delay)
        self._up: bool | None = None
        #: When each PUBLISH still unanswered was sent, oldest first.
        self._publishing: deque[float] = deque()
        self._watch = LoopingCall(self._check_connection)
        self._watch.clock = reactor
        self._watch.start(reconnect_delay, now=False)

    def _factory(self, kind: type[_CommandFactory], delay: float) -> _CommandFactory:
        url = self.url
        factory = kind(
            None,
            url.db or None,
            1,
            isLazy=True,
            charset=None,
            password=url.password,
            username=url.username,
            replyTimeout=self.timeout,
            convertNumbers=False,
        )
        factory.link = self
        factory.initialDelay = min(factory.initialDelay, delay)
        factory.maxDelay = delay
        factory.startConnecting(RedisLogin._endpoint(self._reactor, url, self.timeout))
        return factory

    @property
    def connected(self) -> bool:
        """
        Whether both connections are up.
        """
        return bool(self._commands.size and self._subscriber.size)

    def health(self) -> str | None:
        """
        A health check: L{None} while the link is up.
        """
        return None if self.connected else f"{self.description} is not reachable"

    def _check_connection(self) -> None:
        self._check_publishing()
        up = self.connected
        if up == self._up:
            return
        if up:
            self.log.info("{redis} is up", redis=self.description)
        elif self._up or self._up is None:
            self.log.warn(
                "{redis} is down; logins, room entries and chat fail until it is back",
                redis=self.description,
            )
        self._up = up

    def _command_up(self) -> None:
        self.on_command_up()

    def _subscriber_up(self) -> None:
        self.on_subscriber_up()

    def _message_received(self, channel: bytes, message: bytes) -> None:
        self.stats.messages_in += 1
        self.on_message(channel, message)

    def _connection(self, factory: _CommandFactory) -> Any:
        for conn in factory.pool:
            if conn.connected:
                return conn
        raise ClusterUnavailableError(f"{self.description} is not reachable")

    def _call(self, factory: _CommandFactory, *command: Any) -> Deferred[Any]:
        try:
            reply: Deferred[Any] = self._connection(factory).execute_command(*command)
        except txredisapi.ConnectionError as e:
            raise ClusterUnavailableError(str(e)) from e
        return reply.addErrback(self._unavailable)

    def _unavailable(self, failure: Failure) -> Failure:
        if failure.check(txredisapi.ConnectionError, TimeoutError):
            raise ClusterUnavailableError(
                f"{self.description}: {failure.getErrorMessage()}"
            ) from failure.value
        return failure

    def command(self, *command: Any) -> Deferred[Any]:
        """
        Run one Redis command.

        @raise ClusterUnavailableError: (or fail with it) if Redis is not reachable.
        """
        return self._call(self._commands, *command)

    async def run(self, script: Script, *args: Any) -> Any:
        """
        Run C{script} with C{args} as its C{ARGV} (loading it if needed).

        @raise ClusterUnavailableError: if Redis is not reachable.
        """
        try:
            return await self.command("EVALSHA", script.sha, 0, *args)
        except txredisapi.ResponseError as e:
            if not str(e).startswith("NOSCRIPT"):
                raise
        return await self.command("EVAL", script.source, 0, *args)

    def publish(self, channel: bytes, message: bytes) -> Deferred[Any]:
        """
        Publish C{message} on C{channel}.

        A node publishes every chat, so this is txredisapi's C{execute_command}
        without what a PUBLISH does not need (encoding arguments of any type,
        a timer per command): the link's watch gives up on a command
        connection whose oldest PUBLISH went unanswered for C{timeout}
        seconds, which fails every command waiting on it.

        @raise ClusterUnavailableError: (or fail with it) if Redis is not reachable.
        """
        connection = self._connection(self._commands)
        connection.transport.write(
            b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
            % (len(channel), channel, len(message), message)
        )
        started = time.perf_counter()
        self._publishing.append(started)
        reply: Deferred[Any] = connection.replyQueue.get()
        return reply.addCallback(self._published, started)

    def _published(self, reply: Any, started: float) -> Any:
        self._publishing.popleft()
        if isinstance(reply, Exception):  # txredisapi's way of failing a reply
            if isinstance(reply, (txredisapi.ConnectionError, TimeoutError)):
                raise ClusterUnavailableError(f"{self.description}: {reply}")
            raise reply
        stats = self.stats
        stats.messages_out += 1
        if stats.publish_seconds is not None:
            stats.publish_seconds(time.perf_counter() - started)
        return reply

    def _check_publishing(self) -> None:
        publishing = self._publishing
        if publishing and time.perf_counter() - publishing[0] > self.timeout:
            self.log.warn(
                "{redis} did not answer a PUBLISH within {timeout} s; reconnecting",
                redis=self.description,
                timeout=self.timeout,
            )
            for connection in self._commands.pool:
                connection.transport.abortConnection()

    def subscribe(self, channel: bytes) -> Deferred[Any]:
        """
        Subscribe to C{channel}; fires once Redis confirmed it.

        @raise ClusterUnavailableError: (or fail with it) if Redis is not reachable.
        """
        reply = self._call(self._subscriber, b"SUBSCRIBE", channel)
        return reply.addTimeout(self.timeout, self._reactor).addErrback(
            self._subscribe_failed
        )

    def _subscribe_failed(self, failure: Failure) -> Failure:
        if failure.check(ClusterUnavailableError):
            return failure
        raise ClusterUnavailableError(
            f"subscribing failed: {failure.getErrorMessage()}"
        )

    def unsubscribe(self, channel: bytes) -> None:
        """
        Stop receiving C{channel}'s messages (nothing to do while down: a new
        subscriber connection starts with no subscriptions).
        """
        with contextlib.suppress(ClusterUnavailableError):
            self._call(self._subscriber, b"UNSUBSCRIBE", channel).addErrback(
                lambda failure: None
            )

    async def close(self) -> None:
        """
        Close both connections.
        """
        if self._watch.running:
            self._watch.stop()
        await self._commands.disconnect()
        await self._subscriber.disconnect()


def shard_of(key: bytes, shards: int) -> int:
    """
    The shard of C{key} among C{shards}: a stable hash (CRC-32), the same on
    every node and every run.
    """
    return zlib.crc32(key) % shards if shards > 1 else 0


class ShardedLink:
    """
    A node's links to every shard of the cluster's Redis: a room's state and
    stream live on the shard of its number, a user's presence on the shard of
    its id, the unique id counter on the first shard.

    @ivar shards: the link to each shard, in the configured order.
    @ivar stats: what went over all of them.
    """

    def __init__(self, shards: Sequence[RedisLink]) -> None:
        self.shards = list(shards)
        self.stats = LinkStats()
        for link in self.shards:
            link.stats = self.stats
        self.timeout = self.shards[0].timeout
        if len(self.shards) == 1:
            self.description = self.shards[0].description
        else:
            self.description = "cluster Redis shards at " + ", ".join(
                str(link.url) for link in self.shards
            )

    def for_room(self, room: int) -> RedisLink:
        """
        The link to the shard of C{room}.
        """
        return self.shards[shard_of(b"%d" % room, len(self.shards))]

    def for_user(self, user_id: bytes) -> RedisLink:
        """
        The link to the shard of C{user_id}'s presence.
        """
        return self.shards[shard_of(user_id, len(self.shards))]

    @property
    def connected(self) -> bool:
        """
        Whether every connection to every shard is up.
        """
        return all(link.connected for link in self.shards)

    def health(self) -> str | None:
        """
        A health check: L{None} while every shard's link is up.
        """
        problems = [problem for link in self.shards if (problem := link.health())]
        return "; ".join(problems) or None

    @property
    def on_messages_end(self) -> Callable[[], None]:
        """
        Called after the messages of one read from any shard.
        """
        return self.shards[0].on_messages_end

    @on_messages_end.setter
    def on_messages_end(self, callback: Callable[[], None]) -> None:
        for link in self.shards:
            link.on_messages_end = callback

    async def close(self) -> None:
        """
        Close the links to every shard.
        """
        for link in self.shards:
            await link.close()
