"""
Tests for L{chatsvc.host.services} and L{chatsvc.host.options}: start-up
logging, the open-login warning, endpoints and option parsing.
"""

from __future__ import annotations

import socket

from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatsvc.content.chat import ChatConfig
from chatsvc.host.options import ChatOptions, EchoOptions, SendQueueOptions
from chatsvc.host.redis_login import RedisURL
from chatsvc.host.services import chat_service, echo_service, sendqueue_service
from chatsvc.host.settings import HostConfig
from chatsvc.net.config import NetConfig
from tests.support import reactor


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class StartupTests(TestCase):
    async def test_logs_reactor_and_address(self) -> None:
        service = echo_service("tcp:0:interface=127.0.0.1", NetConfig(), reactor)
        with capturedLogs() as events:
            service.startService()
            self.addCleanup(service.stopService)
            port = await service.listener.listening
        [event] = [e for e in events if "listening" in e["log_format"]]
        self.assertEqual(event["address"], f"127.0.0.1:{port.getHost().port}")
        self.assertEqual(event["reactor"].rsplit(".", 1)[1], type(reactor).__name__)

    async def test_ipv6(self) -> None:
        if not _has_ipv6():
            raise self.failureException("this machine has no IPv6 loopback")
        service = echo_service("tcp6:0:interface=\\:\\:1", NetConfig(), reactor)
        service.startService()
        self.addCleanup(service.stopService)
        port = await service.listener.listening
        self.assertEqual(port.getHost().host, "::1")

    async def open_login_warnings(
        self, endpoint: str, web: str | None = None
    ) -> list[str]:
        service = chat_service(
            endpoint,
            NetConfig(),
            ChatConfig(),
            reactor=reactor,
            host=HostConfig(web=web),
        )
        with capturedLogs() as events:
            service.startService()
            self.addCleanup(service.stopService)
            await service.listener.listening
            if service.web is not None:
                await service.web.listening
        return [e["log_format"] for e in events if e["log_level"] == LogLevel.warn]

    async def test_open_login_on_a_public_web_endpoint_warns(self) -> None:
        warnings = await self.open_login_warnings("tcp:0:interface=127.0.0.1", "tcp:0")
        self.assertEqual(len(warnings), 1)
        self.assertIn("ANYONE", warnings[0])

    async def test_open_login_on_all_interfaces_warns(self) -> None:
        warnings = await self.open_login_warnings("tcp:0")
        self.assertEqual(len(warnings), 1)
        self.assertIn("ANYONE", warnings[0])

    async def test_open_login_on_loopback_is_quiet(self) -> None:
        self.assertEqual(
            await self.open_login_warnings("tcp:0:interface=127.0.0.1"), []
        )

    def test_port_in_use_raises(self) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            service = echo_service(
                f"tcp:{port}:interface=127.0.0.1", NetConfig(), reactor
            )
            self.assertRaises(CannotListenError, service.startService)


class OptionsTests(SynchronousTestCase):
    def test_default_endpoint_backlog(self) -> None:
        """
        By default a stage lets 1024 connections wait to be accepted, not
        Twisted's 50: a burst of connects is not partly dropped.
        """
        options = SendQueueOptions()
        options.parseOptions([])
        memory = MemoryReactorClock()
        sendqueue_service(options["listen"], options.net, memory).startService()
        self.assertEqual(
            [(port, backlog) for port, _, backlog, _ in memory.tcpServers],
            [(11021, 1024)],
        )

    def test_defaults(self) -> None:
        options = ChatOptions()
        options.parseOptions([])
        self.assertEqual(options["listen"], "tcp:11021:backlog=1024")
        self.assertEqual(options.net, NetConfig())
        self.assertEqual(options.chat.rooms, 10)
        self.assertEqual(options.chat.room_start, 0)
        self.assertEqual(options.chat.room_capacity, 4)
        self.assertEqual(options.chat.max_users, 10_000)
        self.assertEqual(options.chat.login_timeout, 10)
        self.assertEqual(options.net.max_connections_per_ip, 64)
        self.assertEqual(options.net.socket_send_buffer, 64 * 1024)
        self.assertIsNone(options.redis)

    def test_all_stages_have_the_net_options(self) -> None:
        for options_class in (EchoOptions, SendQueueOptions, ChatOptions):
            text = str(options_class())
            for option in (
                "--listen",
                "--max-connections",
                "--max-packet-size",
                "--send-queue-limit",
                "--idle-timeout",
                "--max-connections-per-ip",
                "--socket-send-buffer",
            ):
                self.assertIn(option, text)
        self.assertIn("--login-timeout", str(ChatOptions()))
        self.assertNotIn("--login-timeout", str(SendQueueOptions()))

    def test_values(self) -> None:
        options = ChatOptions()
        options.parseOptions(
            [
                "--listen",
                "tcp6:9000",
                "--max-connections",
                "5",
                "--max-packet-size",
                "2048",
                "--send-queue-limit",
                "100000",
                "--idle-timeout",
                "30",
                "--max-connections-per-ip",
                "3",
                "--socket-send-buffer",
                "0",
                "--login-timeout",
                "2.5",
                "--rooms",
                "3",
                "--room-start",
                "100",
                "--room-capacity",
                "8",
                "--max-users",
                "50",
                "--chat-rate",
                "2.5",
                "--chat-burst",
                "5",
                "--redis",
                "redis://u:p@h:1234/2",
                "--redis-key-prefix",
                "x:",
            ]
        )
        self.assertEqual(
            options.net,
            NetConfig(
                max_connections=5,
                max_packet_size=2048,
                send_queue_limit=100000,
                idle_timeout=30,
                max_connections_per_ip=3,
                socket_send_buffer=0,
            ),
        )
        self.assertEqual(
            options.chat,
            ChatConfig(
                rooms=3,
                room_start=100,
                room_capacity=8,
                max_users=50,
                chat_rate=2.5,
                chat_burst=5,
                login_timeout=2.5,
            ),
        )
        self.assertEqual(options.redis, RedisURL("h", 1234, 2, "u", "p"))

    def test_invalid_values(self) -> None:
        for args in (
            ["--rooms", "0"],
            ["--rooms", "-1"],
            ["--max-connections", "x"],
            ["--max-packet-size", "4"],
            ["--idle-timeout", "-1"],
            ["--max-connections-per-ip", "-1"],
            ["--socket-send-buffer", "-1"],
            ["--login-timeout", "-1"],
            ["--redis", "http://x"],
            ["--chat-rate", "fast"],
        ):
            self.assertRaises(usage.UsageError, ChatOptions().parseOptions, args)


class RedisURLTests(SynchronousTestCase):
    def test_forms(self) -> None:
        self.assertEqual(
            RedisURL.parse("redis://127.0.0.1:6379/0"), RedisURL("127.0.0.1")
        )
        self.assertEqual(RedisURL.parse("redis://h"), RedisURL("h"))
        self.assertEqual(
            RedisURL.parse("rediss://user:p%40ss@h:7000/3"),
            RedisURL("h", 7000, 3, "user", "p@ss", tls=True),
        )
        self.assertEqual(
            RedisURL.parse("redis://:secret@h/1"),
            RedisURL("h", 6379, 1, None, "secret"),
        )

    def test_bad(self) -> None:
        for url in ("http://h", "redis://h:port", "redis://h/db", "redis://h/0?x=1"):
            self.assertRaises(ValueError, RedisURL.parse, url)

    def test_str_masks_password(self) -> None:
        self.assertEqual(
            str(RedisURL.parse("redis://u:secret@h:1/2")), "redis://u:***@h:1/2"
        )
        self.assertEqual(str(RedisURL.parse("rediss://h")), "rediss://h:6379/0")


class ReactorCheckTests(SynchronousTestCase):
    """
    A run asked to use one reactor cannot silently pass on another.
    """

    def test_other_reactor_fails(self) -> None:
        from tests import support

        other = "epoll" if type(reactor).__name__ != "EPollReactor" else "iocp"
        self.patch(support, "EXPECT_REACTOR", other)
        self.assertRaises(AssertionError, support.check_reactor)

    def test_same_reactor_passes(self) -> None:
        from tests import support

        self.patch(support, "EXPECT_REACTOR", type(reactor).__name__)
        support.check_reactor()
