"""
Hostile clients over real TCP: what one client can cost the server, and what
one attacker can take from the others.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable

from twisted.internet.task import deferLater
from twisted.web.client import Agent, readBody

from chatsvc.content.chat import ChatConfig
from chatsvc.host.services import chat_service, sendqueue_service
from chatsvc.host.settings import HostConfig
from chatsvc.net.config import NetConfig
from chatsvc.net.session import Session
from chatsvc.protocol import PacketId, encode_packet
from tests.integration.base import LOOPBACK, IntegrationTestCase
from tests.support import free_port, reactor

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
        client sending all 65,523 of them adds one series, not 131,046.
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
        known = {int(packet_id) for packet_id in PacketId}
        unknown = [i for i in range(0x10000) if i not in known]
        client.send(b"".join(encode_packet(i) for i in unknown))
        stats = service.factory.stats
        await until(lambda: sum(stats.packets_in.values()) == len(unknown), 60)
        response = await Agent(reactor).request(
            b"GET", f"http://127.0.0.1:{metrics_port}/metrics".encode()
        )
        text = (await readBody(response)).decode()
        for family, value in (
            ("chatsvc_packets_in_total", len(unknown)),
            ("chatsvc_packet_bytes_in_total", 5 * len(unknown)),
        ):
            series = [line for line in text.splitlines() if line.startswith(family)]
            self.assertEqual(series, [f'{family}{{packet="unknown"}} {value}.0'])
        self.assertLess(len(text), 20_000)
