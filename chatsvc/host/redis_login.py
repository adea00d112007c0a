# -*- test-case-name: tests.test_redis_login -*-
"""
Login against Redis (the tutorial's steps 9-10), through txredisapi.

A login succeeds when C{GET <prefix><UserID>} returns exactly C{UserPW} (in the
tutorial a separate login server stores a token there with a short expiry).
Redis being down, refusing or slow fails that login, and the pool keeps
reconnecting in the background, so logins work again as soon as Redis is back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import txredisapi
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import LoopingCall
from twisted.logger import Logger


@dataclass(frozen=True, slots=True)
class RedisURL:
    """
    A parsed C{redis://[user:password@]host:port/db} or C{rediss://} URL.
    """

    host: str
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> RedisURL:
        """
        @raise ValueError: if C{url} is not a Redis URL.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"redis {url!r}: the scheme must be redis:// or rediss://")
        path = parts.path.strip("/")
        try:
            db = int(path) if path else 0
            port = parts.port or 6379
        except ValueError:
            raise ValueError(
                f"redis {url!r}: port and database must be numbers"
            ) from None
        if parts.query or parts.fragment:
            raise ValueError(f"redis {url!r}: query strings are not supported")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port,
            db=db,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            tls=parts.scheme == "rediss",
        )

    def __str__(self) -> str:
        """
        The URL with the password masked, for logs.
        """
        scheme = "rediss" if self.tls else "redis"
        auth = ""
        if self.username or self.password is not None:
            auth = (
                f"{self.username or ''}{':***' if self.password is not None else ''}@"
            )
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}"


class RedisLogin:
    """
    Checks logins with C{GET} on a lazy txredisapi connection pool, and logs
    when Redis goes away and comes back.

    @ivar observe_latency: called with the seconds each lookup took.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        url: RedisURL,
        *,
        key_prefix: bytes = b"",
        timeout: float = 2.0,
        pool_size: int = 4,
        reconnect_delay: float = 1.0,
    ) -> None:
        self.url = url
        self.key_prefix = key_prefix
        self.timeout = timeout
        self.description = f"Redis at {url}"
        self._reactor = reactor
        factory = txredisapi.RedisFactory(
            str(url),
            url.db or None,
            pool_size,
            isLazy=True,
            handler=txredisapi.ConnectionHandler,
            charset=None,
            password=url.password,
            username=url.username,
            replyTimeout=timeout,
            convertNumbers=False,
        )
        factory.initialDelay = min(factory.initialDelay, reconnect_delay)
        factory.maxDelay = reconnect_delay
        factory.startConnecting(self._endpoint(reactor, url, timeout))
        self._factory = factory
        self._redis = factory.handler
        self.observe_latency: Callable[[float], None] | None = None
        self._up: bool | None = None
        self._watch = LoopingCall(self._check_connection)
        self._watch.clock = reactor
        self._watch.start(1.0, now=False)

    @property
    def connected(self) -> bool:
        """
        Whether at least one connection of the pool is up.
        """
        return bool(self._factory.size)

    def health(self) -> str | None:
        """
        A health check: L{None} while Redis is reachable.
        """
        return None if self.connected else f"{self.description} is not reachable"

    def _check_connection(self) -> None:
        up = self.connected
        if up == self._up:
            return
        if up:
            self.log.info("{redis} is up", redis=self.description)
        else:
            self.log.warn(
                "{redis} is down; logins fail with 33 until it is back",
                redis=self.description,
            )
        self._up = up

    @staticmethod
    def _endpoint(
        reactor: IReactorTime, url: RedisURL, timeout: float
    ) -> IStreamClientEndpoint:
        endpoint: IStreamClientEndpoint = HostnameEndpoint(
            reactor, url.host, url.port, timeout=timeout
        )
        if url.tls:
            endpoint = wrapClientTLS(optionsForClientTLS(url.host), endpoint)
        return endpoint

    async def check(self, user_id: bytes, password: bytes) -> bool:
        started = self._reactor.seconds()
        reply: Deferred[bytes | None] = self._redis.get(self.key_prefix + user_id)
        reply.addTimeout(self.timeout, self._reactor)
        value = await reply
        if self.observe_latency is not None:
            self.observe_latency(self._reactor.seconds() - started)
        return value is not None and value == password

    async def close(self) -> None:
        if self._watch.running:
            self._watch.stop()
        await self._factory.disconnect()
