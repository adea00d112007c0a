# -*- test-case-name: tests.test_services,tests.integration.test_chat_tcp -*-
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
from typing import Any
from urllib.parse import unquote, urlsplit

import txredisapi
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure


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


#: GET and compare in Redis, for every login of a reactor turn in one round
#: trip. The answer is one string of "1" (accepted) and "0" (refused), a
#: single reply however many logins it covers: txredisapi spends a reactor
#: turn on every string reply it parses, so one reply per login would cap
#: logins at one per turn.
_CHECK = """
local answers = {}
for i, key in ipairs(KEYS) do
    answers[i] = redis.call('GET', key) == ARGV[i] and '1' or '0'
end
return table.concat(answers)
"""


def _timed_out(result: object, timeout: float) -> Failure:
    return Failure(TimeoutError(f"timed out after {timeout} s"))


#: Logins checked by one script call at most.
MAX_BATCH = 512

#: A login waiting for its lookup: key, password, and where the answer goes.
_Waiting = tuple[bytes, bytes, "Deferred[bool]"]


class RedisLogin:
    """
    Checks logins on a lazy txredisapi connection pool, all those of a
    reactor turn in one round trip, and logs when Redis goes away and comes
    back.

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
        self._scripting = True
        self._waiting: list[_Waiting] = []
        self._flush_call: IDelayedCall | None = None
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
        answer: Deferred[bool] = Deferred()
        self._waiting.append((self.key_prefix + user_id, password, answer))
        if self._flush_call is None:
            self._flush_call = self._reactor.callLater(0, self._flush)
        return await answer

    def _flush(self) -> None:
        """
        Look up the logins that arrived during this turn.
        """
        self._flush_call = None
        waiting, self._waiting = self._waiting, []
        for start in range(0, len(waiting), MAX_BATCH):
            batch = waiting[start : start + MAX_BATCH]
            lookup = ensureDeferred(
                self._lookup([k for k, _, _ in batch], [p for _, p, _ in batch])
            )
            lookup.addCallbacks(
                self._answer, self._fail, callbackArgs=(batch,), errbackArgs=(batch,)
            )

    async def _lookup(self, keys: list[bytes], passwords: list[bytes]) -> list[bool]:
        started = self._reactor.seconds()
        if self._scripting:
            try:
                answers = await self._ask(self._redis.eval(_CHECK, keys, passwords))
            except txredisapi.ResponseError as e:
                self._scripting = False
                self.log.warn(
                    "{redis} refused EVAL ({error}); checking logins with MGET",
                    redis=self.description,
                    error=e,
                )
                return await self._lookup(keys, passwords)
            accepted = [answer == ord("1") for answer in answers]
        else:
            values = await self._ask(self._redis.mget(keys))
            accepted = [
                v is not None and v == p for v, p in zip(values, passwords, strict=True)
            ]
        if self.observe_latency is not None:
            self.observe_latency(self._reactor.seconds() - started)
        return accepted

    def _ask(self, reply: Deferred[Any]) -> Deferred[Any]:
        return reply.addTimeout(self.timeout, self._reactor, onTimeoutCancel=_timed_out)

    @staticmethod
    def _answer(accepted: list[bool], batch: list[_Waiting]) -> None:
        for ok, (_, _, answer) in zip(accepted, batch, strict=True):
            answer.callback(ok)

    @staticmethod
    def _fail(failure: Failure, batch: list[_Waiting]) -> None:
        for _, _, answer in batch:
            answer.errback(failure)

    async def close(self) -> None:
        if self._flush_call is not None:
            self._flush_call.cancel()
            self._flush_call = None
            self._fail(
                Failure(ConnectionError("the login back end is closing")), self._waiting
            )
            self._waiting = []
        if self._watch.running:
            self._watch.stop()
        await self._factory.disconnect()
