# -*- test-case-name: tests.test_loadtest -*-
"""
Creating the bots' login keys in Redis before a run, with a small blocking
RESP client (a pipeline of C{SET} commands on one socket).

chatsvc's Redis login accepts a user when C{GET <prefix><UserID>} equals the
password (see L{chatsvc.host.redis_login}); this stores exactly that, with an
expiry so that a load test leaves nothing behind.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable

from chatsvc.host.redis_login import RedisURL

_CHUNK = 1000


class RedisError(Exception):
    """
    Redis refused a command, or could not be reached.
    """


def command(*args: bytes) -> bytes:
    """
    Encode one command in RESP.
    """
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


class _Replies:
    """
    Reads simple RESP replies (status, error, integer, bulk) from a socket.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._file = sock.makefile("rb")

    def read(self) -> bytes | None:
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise RedisError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"-":
            raise RedisError(rest.decode("utf-8", "replace"))
        if kind in (b"+", b":"):
            return rest
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self._file.read(size + 2)
            return data[:-2]
        raise RedisError(f"unexpected Redis reply {line[:40]!r}")

    def close(self) -> None:
        self._file.close()


def set_passwords(
    url: RedisURL,
    users: Iterable[bytes],
    password: bytes,
    *,
    key_prefix: bytes = b"",
    expire_seconds: int = 0,
    timeout: float = 10.0,
) -> int:
    """
    C{SET <key_prefix><user> <password>} for every user (with C{EX} when
    C{expire_seconds}); return how many keys were set.

    @raise RedisError: if Redis cannot be reached or refuses a command.
    """
    try:
        raw = socket.create_connection((url.host, url.port), timeout=timeout)
    except OSError as e:
        raise RedisError(f"cannot connect to Redis at {url}: {e}") from None
    sock: socket.socket = raw
    if url.tls:
        sock = ssl.create_default_context().wrap_socket(raw, server_hostname=url.host)
    replies = _Replies(sock)
    try:
        setup = []
        if url.password is not None:
            auth = [url.password.encode()]
            if url.username:
                auth.insert(0, url.username.encode())
            setup.append(command(b"AUTH", *auth))
        if url.db:
            setup.append(command(b"SELECT", b"%d" % url.db))
        if setup:
            sock.sendall(b"".join(setup))
            for _ in setup:
                replies.read()
        expiry = (b"EX", b"%d" % expire_seconds) if expire_seconds else ()
        count = 0
        batch: list[bytes] = []
        for user in users:
            batch.append(command(b"SET", key_prefix + user, password, *expiry))
            if len(batch) == _CHUNK:
                count += _send(sock, replies, batch)
                batch = []
        if batch:
            count += _send(sock, replies, batch)
        return count
    except OSError as e:
        raise RedisError(f"Redis at {url}: {e}") from None
    finally:
        replies.close()
        sock.close()


def _send(sock: socket.socket, replies: _Replies, batch: list[bytes]) -> int:
    sock.sendall(b"".join(batch))
    for _ in batch:
        replies.read()
    return len(batch)
