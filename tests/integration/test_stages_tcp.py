"""
The echo and send-queue stages over real TCP: many connections, bad input,
backpressure.
"""

from __future__ import annotations

import random
import struct

from twisted.internet.defer import gatherResults
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, capturedLogs

from chatsvc.host.services import echo_service, sendqueue_service
from chatsvc.net.config import NetConfig
from chatsvc.net.echo import RawEcho
from chatsvc.protocol import Echo, encode_packet
from tests.integration.base import LOOPBACK, IntegrationTestCase, wait_all
from tests.support import reactor


class EchoStageTests(IntegrationTestCase):
    async def test_200_connections(self) -> None:
        config = NetConfig(max_connections_per_ip=0)  # all from 127.0.0.1
        port = await self.start(echo_service(LOOPBACK, config, reactor))
        clients = await self.connect(port, 200)
        for round_ in range(5):
            for i, client in enumerate(clients):
                client.send(encode_packet(1, b"%d-%d" % (i, round_)))
            await wait_all(clients, lambda c, n=round_ + 1: len(c.events) >= n)
        for i, client in enumerate(clients):
            self.assertEqual(client.events, [Echo(b"%d-%d" % (i, r)) for r in range(5)])

    async def test_slow_reader_is_held_back_not_buffered(self) -> None:
        """
        A client that sends without reading stops being read from once the
        send-queue limit is unsent; nothing is lost when it reads again.
        """
        limit = 64 * 1024
        service = echo_service(LOOPBACK, NetConfig(send_queue_limit=limit), reactor)
        port = await self.start(service)
        [client] = await self.connect(port)
        # The IOCP reactor starts reading after connectionMade returns, so
        # pausing has to wait a turn.
        await deferLater(reactor, 0, lambda: None)
        client.transport.pauseProducing()  # type: ignore[union-attr]
        total = 16 * 1024 * 1024
        chunk = bytes(range(256)) * 256
        for _ in range(total // len(chunk)):
            client.send(chunk)
        await deferLater(reactor, 1.0, lambda: None)
        [server_side] = service.factory.connections.values()
        assert isinstance(server_side, RawEcho)
        self.assertLess(server_side.received, total // 2)
        client.transport.resumeProducing()  # type: ignore[union-attr]
        await client.wait_until(lambda: len(client.raw) >= total, timeout=60)
        self.assertEqual(bytes(client.raw), chunk * (total // len(chunk)))


class SendQueueStageTests(IntegrationTestCase):
    async def start_sendqueue(self, **config: object) -> int:
        return await self.start(
            sendqueue_service(LOOPBACK, NetConfig(**config), reactor)  # type: ignore[arg-type]
        )

    async def test_200_connections_pipelined(self) -> None:
        port = await self.start_sendqueue(max_connections_per_ip=0)
        clients = await self.connect(port, 200)
        for i, client in enumerate(clients):
            client.send(
                b"".join(encode_packet(1, b"%d:%d" % (i, n)) for n in range(50))
            )
        await wait_all(clients, lambda c: len(c.events) >= 50)
        for i, client in enumerate(clients):
            self.assertEqual(
                client.events, [Echo(b"%d:%d" % (i, n)) for n in range(50)]
            )

    async def test_thousand_packets_in_one_write(self) -> None:
        port = await self.start_sendqueue()
        [client] = await self.connect(port)
        client.send(b"".join(encode_packet(1, b"%d" % n) for n in range(1000)))
        await client.wait_events(1000)
        self.assertEqual(client.events, [Echo(b"%d" % n) for n in range(1000)])

    async def test_byte_at_a_time(self) -> None:
        port = await self.start_sendqueue()
        [client] = await self.connect(port)
        stream = b"".join(encode_packet(1, b"packet %d" % n) for n in range(5))
        for i in range(len(stream)):
            client.send(stream[i : i + 1])
            await deferLater(reactor, 0, lambda: None)
        await client.wait_events(5)
        self.assertEqual(client.events, [Echo(b"packet %d" % n) for n in range(5)])

    async def test_unknown_ids_ignored(self) -> None:
        port = await self.start_sendqueue()
        [client] = await self.connect(port)
        client.send(encode_packet(999, b"?") + encode_packet(1, b"after"))
        await client.wait_events(1)
        self.assertEqual(client.events, [Echo(b"after")])

    async def bad_input(self, data: bytes, reason: str) -> None:
        """
        Send C{data} on one connection while another keeps echoing: the bad one
        is closed with one log line naming peer and reason.
        """
        port = await self.start_sendqueue(max_packet_size=1024)
        bad, good = await self.connect(port, 2)
        with capturedLogs() as events:
            bad.send(data)
            good.send(encode_packet(1, b"still here"))
            await bad.lost
            await good.wait_events(1)
        self.assertEqual(good.events, [Echo(b"still here")])
        warnings = [e for e in events if e["log_level"] >= LogLevel.warn]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn(reason, warnings[0]["reason"])
        self.assertEqual(warnings[0]["peer"], f"127.0.0.1:{bad.local_port}")
        good.send(encode_packet(1, b"and again"))
        await good.wait_events(2)

    async def test_length_zero(self) -> None:
        await self.bad_input(struct.pack("<HHB", 0, 1, 0), "packet length 0")

    async def test_length_one_to_four(self) -> None:
        for length in range(1, 5):
            await self.bad_input(
                struct.pack("<HHB", length, 1, 0), f"packet length {length}"
            )

    async def test_length_above_maximum(self) -> None:
        await self.bad_input(struct.pack("<HHB", 1025, 1, 0) + b"x" * 1020, "1025")

    async def test_length_65535(self) -> None:
        await self.bad_input(struct.pack("<HHB", 65535, 1, 0), "65535")

    async def test_header_cut_off_by_disconnect(self) -> None:
        port = await self.start_sendqueue()
        [client] = await self.connect(port)
        with capturedLogs() as events:
            client.send(b"\x09\x00\x01")
            await deferLater(reactor, 0.1, lambda: None)
            client.transport.loseConnection()  # type: ignore[union-attr]
            await client.lost
            await deferLater(reactor, 0.2, lambda: None)
        warnings = [e for e in events if e["log_level"] >= LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertIn("closed inside a packet", warnings[0]["reason"])

    async def test_random_garbage(self) -> None:
        rng = random.Random(1234)
        port = await self.start_sendqueue()
        good = (await self.connect(port))[0]
        garbage_clients = await self.connect(port, 20)
        for client in garbage_clients:
            client.send(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4000))))
        good.send(encode_packet(1, b"ok"))
        await good.wait_events(1)
        await deferLater(reactor, 0.5, lambda: None)
        for client in garbage_clients:
            client.transport.loseConnection()  # type: ignore[union-attr]
        await gatherResults([c.lost for c in garbage_clients])
        good.send(encode_packet(1, b"ok again"))
        await good.wait_events(2)
        self.assertEqual(good.events, [Echo(b"ok"), Echo(b"ok again")])

    async def test_connection_limit(self) -> None:
        port = await self.start_sendqueue(max_connections=3)
        clients = await self.connect(port, 3)
        [extra] = await self.connect(port)
        await extra.lost
        clients[0].send(encode_packet(1, b"served"))
        await clients[0].wait_events(1)
