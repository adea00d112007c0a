# -*- test-case-name: tests.test_cluster -*-
"""
Which room channels a node is subscribed to: those it has local members (or
local members entering) in, and no others, so a room's traffic reaches only
the nodes that deliver it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatsvc.cluster.link import ClusterUnavailableError, RedisLink


class Channels:
    """
    Reference-counted subscriptions: subscribe on the first user of a
    channel, unsubscribe on the last, subscribe again to every channel in use
    when the subscriber connection comes back.
    """

    log = Logger()

    def __init__(self, route: Callable[[bytes], RedisLink]) -> None:
        self._route = route
        self._users: Counter[bytes] = Counter()
        self._pending: dict[bytes, list[Deferred[None]]] = {}
        self._confirmed: set[bytes] = set()

    def __len__(self) -> int:
        """
        How many channels are in use.
        """
        return len(self._users)

    def __contains__(self, channel: object) -> bool:
        return channel in self._users

    async def join(self, channel: bytes) -> None:
        """
        Use C{channel}: returns once its messages reach this node.

        @raise ClusterUnavailableError: if the subscription failed (the channel is
            then not in use by this caller).
        """
        self._users[channel] += 1
        if channel in self._confirmed:
            return
        waiter: Deferred[None] = Deferred()
        waiting = self._pending.get(channel)
        if waiting is None:
            self._pending[channel] = [waiter]
            self._subscribe(channel)
        else:
            waiting.append(waiter)
        try:
            await waiter
        except ClusterUnavailableError:
            self.release(channel)
            raise

    def _subscribe(self, channel: bytes) -> None:
        try:
            subscribing = self._route(channel).subscribe(channel)
        except ClusterUnavailableError:
            self._done(Failure(), channel)
            return
        subscribing.addBoth(self._done, channel)

    def _done(self, result: Any, channel: bytes) -> None:
        waiting = self._pending.pop(channel, [])
        if isinstance(result, Failure):
            for waiter in waiting:
                waiter.errback(result)
            if not waiting:
                self.log.warn(
                    "Subscribing to {channel!r} failed: {error}",
                    channel=channel,
                    error=result.getErrorMessage(),
                )
            return
        if channel in self._users:
            self._confirmed.add(channel)
        else:
            self._route(channel).unsubscribe(channel)
        for waiter in waiting:
            waiter.callback(None)

    def release(self, channel: bytes) -> None:
        """
        Stop using C{channel}; the last user unsubscribes.
        """
        users = self._users
        users[channel] -= 1
        if users[channel] > 0:
            return
        del users[channel]
        if channel in self._confirmed:
            self._confirmed.discard(channel)
            self._route(channel).unsubscribe(channel)

    def resubscribe(self, link: RedisLink) -> None:
        """
        C{link}'s subscriber connection is new: subscribe again to every
        channel in use that goes through it.
        """
        for channel in self._users:
            if self._route(channel) is not link:
                continue
            self._confirmed.discard(channel)
            if channel not in self._pending:
                self._pending[channel] = []
                self._subscribe(channel)
