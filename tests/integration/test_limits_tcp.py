"""
Hostile clients over real TCP: what one client can cost the server, and what
one attacker can take from the others.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable

from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import LogLevel, capturedLogs
from twisted.web.client import Agent, readBody

from chatsvc.content.chat import ChatConfig
from chatsvc.host.services import ChatService, chat_service, sendqueue_service
from chatsvc.host.settings import HostConfig
from chatsvc.net.config import NetConfig
from chatsvc.net.session import Session
from chatsvc.net.stats import UNKNOWN_PACKET
from chatsvc.protocol import (
    ChatNotify,
    Echo,
    PacketId,
    Response,
    chat_request,
    encode_packet,
    enter_room_request,
    login_request,
)
from tests.integration.base import LOOPBACK, IntegrationTestCase, wait_all
from tests.support import PacketClient, free_port, reactor

DEV_ECHO = PacketId.DEV_ECHO


def kernel_unsent(sock: socket.socket) -> int | None:
    """
    Bytes in a socket's kernel send queue (SIOCOUTQ), where the platform
    tells (Linux); L{None} elsewhere.
    """
    if not sys.platform.startswith("linux"):
        return None
    import fcntl
    import struct
    import termios

    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4)
    return int(struct.unpack("i", raw)[0])


async def settle(
    probe: Callable[[], object], interval: float = 0.2, timeout: float = 30
) -> None:
    """
    Wait until C{probe()} returns the same value twice in a row.
    """
    last = object()
    waited = 0.0
    while waited < timeout:
        value = probe()
        if value == last:
            return
        last = value
        await deferLater(reactor, interval, lambda: None)
        waited += interval
    raise AssertionError(f"{probe} did not settle in {timeout} s")


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    """
    Wait until C{condition()} holds.
    """
    waited = 0.0
    while not condition():
        if waited > timeout:
            raise AssertionError(f"{condition} did not hold within {timeout} s")
        await deferLater(reactor, 0.05, lambda: None)
        waited += 0.05


async def connect_from(source: str, port: int) -> PacketClient:
    """
    Connect a L{PacketClient} from address C{source} (any of 127.0.0.0/8
    reaches loopback) to 127.0.0.1:C{port}.
    """
    client = PacketClient()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(source, 0))
    await connectProtocol(endpoint, client)
    return client


def drip(clients: list[PacketClient], data: bytes, interval: float) -> LoopingCall:
    """
    Send C{data} to each of C{clients} one byte every C{interval} seconds.
    """
    sent = 0

    def one_byte() -> None:
        nonlocal sent
        for client in clients:
            if not client.lost.called:
                client.send(data[sent % len(data) : sent % len(data) + 1])
        sent += 1

    call = LoopingCall(one_byte)
    call.clock = reactor
    call.start(interval)
    return call


class SlotHoldingTests(IntegrationTestCase):
    async def start_chat(self, net: NetConfig, chat: ChatConfig) -> int:
        self.service: ChatService = chat_service(LOOPBACK, net, chat, reactor=reactor)
        return await self.start(self.service)

    async def test_honest_users_get_in_while_an_attacker_holds_its_share(
        self,
    ) -> None:
        """
        An attacker opens 60 connections from one address and holds them,
        silent or sending a byte now and then: it gets its 10, keeps them
        only until the login deadline, and 40 honest users from other
        addresses log in and chat meanwhile. The log stays short.
        """
        port = await self.start_chat(
            NetConfig(max_connections=50, max_connections_per_ip=10),
            ChatConfig(chat_rate=0, login_timeout=2.0),
        )
        stats = self.service.factory.stats
        with capturedLogs() as events:
            attackers = await gatherResults(
                [ensureDeferred(connect_from("127.0.0.1", port)) for _ in range(60)]
            )
            self.clients.extend(attackers)
            await until(lambda: sum(a.lost.called for a in attackers) >= 50)
            held = [a for a in attackers if not a.lost.called]
            self.assertEqual(len(held), 10)
            dripping = drip(held[5:], login_request("mallory", "pw"), 0.2)
            self.addCleanup(lambda: dripping.running and dripping.stop())

            honest = await gatherResults(
                [
                    ensureDeferred(connect_from(f"127.0.0.{i + 2}", port))
                    for i in range(40)
                ]
            )
            self.clients.extend(honest)
            for i, client in enumerate(honest):
                client.send(
                    login_request(f"user{i}", "pw") + enter_room_request(i % 10)
                )
            await wait_all(honest, lambda c: len(c.events) >= 2)
            for client in honest:
                login, enter = client.take()[:2]
                self.assertEqual(login, Response(PacketId.LOGIN_RESPONSE, 0))
                self.assertEqual(enter, Response(PacketId.ROOM_ENTER_RESPONSE, 0))
            await self.chat_round(honest, "while held")

            await gatherResults([a.lost for a in held]).addTimeout(10, reactor)
            self.assertEqual(stats.deadlines_missed, 10)
            self.assertEqual(stats.refused_per_ip, 50)
            self.assertEqual(stats.refused, 0)
            self.assertFalse(any(c.lost.called for c in honest))
            await self.chat_round(honest, "after")
        about_attacker = [
            e
            for e in events
            if e["log_level"] >= LogLevel.info
            and e.get("peer", "").startswith("127.0.0.1:")
        ]
        self.assertLessEqual(len(about_attacker), 22)

    async def chat_round(self, users: list[PacketClient], text: str) -> None:
        """
        Every user says C{text}; every member of its room (4 to a room)
        receives the room's 4 messages.
        """
        for client in users:
            client.take()
            client.send(chat_request(text))
        await wait_all(
            users, lambda c: sum(isinstance(e, ChatNotify) for e in c.events) >= 4
        )
        for i, client in enumerate(users):
            notifies = [e for e in client.events if isinstance(e, ChatNotify)]
            senders = sorted(n.user_id for n in notifies)
            room = sorted(b"user%d" % j for j in range(i % 10, 40, 10))
            self.assertEqual(senders, room)
            self.assertEqual({n.message for n in notifies}, {text.encode()})


class KeepaliveTests(IntegrationTestCase):
    async def test_only_complete_packets_keep_a_connection(self) -> None:
        """
        With --idle-timeout, a logged-in user that only listens stays
        connected by sending DEV_ECHO, which the chat stage answers; one
        that sends bytes that never complete a packet is closed, as is one
        that sends nothing.
        """
        service = chat_service(
            LOOPBACK,
            NetConfig(idle_timeout=1.0),
            ChatConfig(login_timeout=0),
            reactor=reactor,
        )
        port = await self.start(service)
        listener, dripper, silent = await self.connect(port, 3)
        for i, client in enumerate((listener, dripper, silent)):
            client.send(login_request(f"user{i}", "pw"))
        await wait_all([listener, dripper, silent], lambda c: len(c.events) >= 1)
        keepalive = LoopingCall(listener.send, encode_packet(DEV_ECHO, b"ping", 7))
        keepalive.clock = reactor
        keepalive.start(0.3)
        self.addCleanup(lambda: keepalive.running and keepalive.stop())
        dripping = drip([dripper], chat_request("never complete"), 0.3)
        self.addCleanup(lambda: dripping.running and dripping.stop())
        with capturedLogs():
            await gatherResults([dripper.lost, silent.lost]).addTimeout(10, reactor)
            await deferLater(reactor, 1.5, lambda: None)
        self.assertFalse(listener.lost.called)
        self.assertEqual(service.factory.stats.idle_timeouts, 2)
        echoes = listener.events[1:]
        self.assertGreaterEqual(len(echoes), 5)
        self.assertEqual(set(echoes), {Echo(b"ping")})


class SendBufferTests(IntegrationTestCase):
    async def test_a_client_that_never_reads_costs_a_bounded_amount(self) -> None:
        """
        With --socket-send-buffer, what the server holds for a client that
        sends without ever reading is bounded: the kernel's send queue by the
        buffer, then the transport's buffer and the send queue; the server
        stops reading from it instead of holding more. Nothing is lost.
        """
        buffer = 64 * 1024
        config = NetConfig(socket_send_buffer=buffer)
        service = sendqueue_service(LOOPBACK, config, reactor)
        port = await self.start(service)
        [client] = await self.connect(port)
        # The IOCP reactor starts reading after connectionMade returns, so
        # pausing has to wait a turn.
        await deferLater(reactor, 0, lambda: None)
        client.transport.pauseProducing()  # type: ignore[union-attr]
        packet = encode_packet(DEV_ECHO, bytes(range(256)) * 3 + b"x" * 251)
        count = 8 * 1024
        client.send(packet * count)
        [server_side] = service.factory.connections.values()
        assert isinstance(server_side, Session)
        sock = server_side.transport.getHandle()  # type: ignore[union-attr]
        # Linux reports (and may use) twice the value set.
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self.assertIn(granted, (buffer, 2 * buffer))
        await settle(lambda: (server_side.decoder.decoded_bytes, kernel_unsent(sock)))
        self.assertLess(server_side.decoder.decoded_bytes, len(packet) * count // 2)
        unsent = kernel_unsent(sock)
        if unsent is not None:
            self.assertGreater(unsent, 0)
            self.assertLessEqual(unsent, granted)
        client.transport.resumeProducing()  # type: ignore[union-attr]
        await client.wait_until(lambda: len(client.raw) >= len(packet) * count, 60)
        self.assertEqual(bytes(client.raw), packet * count)


class MetricSeriesTests(IntegrationTestCase):
    async def test_a_flood_of_packet_ids_creates_no_series(self) -> None:
        """
        Every packet id chatsvc does not know is counted as C{unknown}: a
        logged-in client sending all 65,523 of them adds one series, not
        131,046.
        """
        metrics_port = free_port()
        service = chat_service(
            LOOPBACK,
            NetConfig(),
            ChatConfig(),
            reactor=reactor,
            host=HostConfig(metrics=f"tcp:{metrics_port}:interface=127.0.0.1"),
        )
        port = await self.start(service)
        [client] = await self.connect(port)
        client.send(login_request("flooder", "pw"))
        await client.wait_events(1)
        known = {int(packet_id) for packet_id in PacketId}
        unknown = [i for i in range(0x10000) if i not in known]
        client.send(b"".join(encode_packet(i) for i in unknown))
        stats = service.factory.stats
        await until(lambda: stats.packets_in[UNKNOWN_PACKET] == len(unknown), 120)
        response = await Agent(reactor).request(
            b"GET", f"http://127.0.0.1:{metrics_port}/metrics".encode()
        )
        text = (await readBody(response)).decode()
        for family, login, value in (
            ("chatsvc_packets_in_total", 1, len(unknown)),
            ("chatsvc_packet_bytes_in_total", 71, 5 * len(unknown)),
        ):
            series = [line for line in text.splitlines() if line.startswith(family)]
            self.assertEqual(
                series,
                [
                    f'{family}{{packet="LOGIN_REQUEST"}} {login}.0',
                    f'{family}{{packet="unknown"}} {value}.0',
                ],
            )
        self.assertEqual(
            set(stats.packets_in), {PacketId.LOGIN_REQUEST, UNKNOWN_PACKET}
        )
        self.assertLess(len(text), 20_000)
