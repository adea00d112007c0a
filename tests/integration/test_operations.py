"""
Running the chat stage for real: metrics scraped during a chat run, the health
check, and a graceful shutdown that delivers everything accepted.
"""

from __future__ import annotations

import re

from twisted.internet.defer import gatherResults
from twisted.internet.task import deferLater
from twisted.web.client import Agent, readBody

from chatsvc.content.chat import ChatConfig
from chatsvc.host.redis_login import RedisURL
from chatsvc.host.services import ChatService, chat_service
from chatsvc.host.settings import HostConfig
from chatsvc.net.config import NetConfig
from chatsvc.protocol import (
    ChatNotify,
    PacketId,
    Response,
    chat_request,
    enter_room_request,
    login_request,
)
from tests.integration.base import LOOPBACK, IntegrationTestCase, wait_all
from tests.support import PacketClient, free_port, reactor, start_redis

CHAT = PacketId.ROOM_CHAT_RESPONSE


def metric(text: str, name: str, labels: str = "") -> float:
    """
    The value of one sample in Prometheus text format.
    """
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "")
    match = re.search(r"^" + pattern + r" (\S+)$", text, re.MULTILINE)
    if match is None:
        raise AssertionError(f"{name}{{{labels}}} not in the metrics:\n{text}")
    return float(match.group(1))


class OperationsTestCase(IntegrationTestCase):
    async def start_chat(self, **kwargs: object) -> tuple[ChatService, int]:
        self.metrics_port = free_port()
        service = chat_service(
            LOOPBACK,
            NetConfig(),
            ChatConfig(chat_rate=0),
            reactor=reactor,
            host=HostConfig(
                metrics=f"tcp:{self.metrics_port}:interface=127.0.0.1", shutdown_grace=5
            ),
            **kwargs,  # type: ignore[arg-type]
        )
        port = await self.start(service)
        return service, port

    async def get(self, path: str) -> tuple[int, str]:
        response = await Agent(reactor).request(
            b"GET", f"http://127.0.0.1:{self.metrics_port}{path}".encode()
        )
        return response.code, (await readBody(response)).decode()

    async def room_of(self, port: int, count: int) -> list[PacketClient]:
        clients = await self.connect(port, count)
        for i, client in enumerate(clients):
            client.send(login_request(f"u{i}", "pw") + enter_room_request(0))
        await wait_all(clients, lambda c: len(c.events) >= 3)
        for client in clients:
            client.take()
        return clients


class MetricsTests(OperationsTestCase):
    async def test_numbers_move_during_a_chat_run(self) -> None:
        _, port = await self.start_chat()
        code, before = await self.get("/metrics")
        self.assertEqual(code, 200)
        self.assertEqual(metric(before, "chatsvc_connections", 'transport="tcp"'), 0)
        clients = await self.room_of(port, 3)
        for client in clients:
            client.send(chat_request("hi") * 5)
        await wait_all(
            clients, lambda c: sum(isinstance(e, ChatNotify) for e in c.events) >= 15
        )
        _, after = await self.get("/metrics")
        self.assertEqual(metric(after, "chatsvc_connections", 'transport="tcp"'), 3)
        self.assertEqual(metric(after, "chatsvc_users"), 3)
        self.assertEqual(metric(after, "chatsvc_room_users", 'room="0"'), 3)
        self.assertEqual(metric(after, "chatsvc_room_users", 'room="1"'), 0)
        self.assertEqual(metric(after, "chatsvc_logins_total", 'result="0"'), 3)
        self.assertEqual(
            metric(after, "chatsvc_packets_in_total", 'packet="ROOM_CHAT_REQUEST"'), 15
        )
        self.assertEqual(
            metric(after, "chatsvc_packet_bytes_in_total", 'packet="LOGIN_REQUEST"'),
            3 * 71,
        )
        self.assertEqual(
            metric(after, "chatsvc_packets_out_total", 'packet="ROOM_CHAT_NOTIFY"'), 45
        )
        self.assertEqual(
            metric(
                after, "chatsvc_packet_bytes_out_total", 'packet="ROOM_CHAT_NOTIFY"'
            ),
            45 * 295,
        )
        self.assertGreater(metric(after, "chatsvc_bytes_out_total"), 45 * 295)
        self.assertEqual(metric(after, "chatsvc_send_queue_bytes"), 0)
        self.assertNotIn("chatsvc_protocol_errors_total{", after)
        clients[0].send(b"\x00\x00\x01\x00\x00")
        await clients[0].lost
        await deferLater(reactor, 0.1, lambda: None)
        _, later = await self.get("/metrics")
        self.assertEqual(
            metric(later, "chatsvc_protocol_errors_total", 'kind="length"'), 1
        )
        self.assertEqual(metric(later, "chatsvc_connections", 'transport="tcp"'), 2)

    async def test_health(self) -> None:
        await self.start_chat()
        self.assertEqual(await self.get("/healthz"), (200, "ok\n"))


class RedisHealthTests(OperationsTestCase):
    async def test_health_follows_redis(self) -> None:
        redis = start_redis(self)
        redis.command("SET", "u0", "pw")
        _, port = await self.start_chat(redis=RedisURL.parse(redis.url))
        [client] = await self.connect(port)
        client.send(login_request("u0", "pw"))
        await client.wait_events(1)
        self.assertEqual(client.events, [Response(PacketId.LOGIN_RESPONSE, 0)])
        self.assertEqual(await self.get("/healthz"), (200, "ok\n"))
        _, text = await self.get("/metrics")
        self.assertEqual(metric(text, "chatsvc_redis_request_seconds_count"), 1)
        redis.stop()
        await deferLater(reactor, 0.5, lambda: None)
        code, body = await self.get("/healthz")
        self.assertEqual(code, 503)
        self.assertIn("is not reachable", body)
        redis.start()
        for _ in range(40):
            if (await self.get("/healthz"))[0] == 200:
                break
            await deferLater(reactor, 0.25, lambda: None)
        else:
            self.fail("health did not recover with Redis")


class ShutdownTests(OperationsTestCase):
    async def test_everything_accepted_is_delivered(self) -> None:
        """
        Stopping the service while a room is busy: every notify the server
        accepted reaches every member, then the connections close.
        """
        service, port = await self.start_chat()
        clients = await self.room_of(port, 4)
        for n in range(200):
            for i, client in enumerate(clients):
                client.send(chat_request(f"{i}:{n}"))
        # Stop once the server is busy with them: some accepted, most not yet.
        await clients[0].wait_until(lambda: Response(CHAT, 0) in clients[0].events)
        stopping = service.stopService()
        await gatherResults([c.lost for c in clients])
        await stopping
        accepted = [sum(1 for e in c.events if e == Response(CHAT, 0)) for c in clients]
        self.assertGreater(sum(accepted), 0)
        notifies = [
            [e.message for e in c.events if isinstance(e, ChatNotify)] for c in clients
        ]
        for received in notifies:
            self.assertEqual(received, notifies[0])
        for i, count in enumerate(accepted):
            mine = [m for m in notifies[0] if m.startswith(b"%d:" % i)]
            self.assertEqual(mine, [b"%d:%d" % (i, n) for n in range(count)])
        self.assertEqual(service.factory.connections, {})
        self.assertFalse(service.running)
