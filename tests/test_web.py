"""
Tests for L{chatsvc.web.site}: the page's files and headers, C{/server.json},
and the C{--web} options.
"""

from __future__ import annotations

import json

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.content.chat import ChatConfig
from chatsvc.host.options import ChatOptions
from chatsvc.net.config import NetConfig
from chatsvc.net.session import SessionFactory
from chatsvc.web.site import CONTENT_SECURITY_POLICY, OriginPolicy, chat_site
from tests.test_session import RecordingApp


class SiteTests(SynchronousTestCase):
    def setUp(self) -> None:
        reactor = MemoryReactorClock()
        factory = SessionFactory(RecordingApp(), NetConfig(), reactor)
        self.site = chat_site(
            factory, ChatConfig(rooms=5, room_start=10), reactor=reactor
        )

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n".encode()
        )
        head, _, body = transport.value().partition(b"\r\n\r\n")
        status, *lines = head.decode().split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(": ")
            headers[name.lower()] = value
        return int(status.split()[1]), headers, body

    def test_page(self) -> None:
        status, headers, body = self.get("/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "text/html; charset=utf-8")
        self.assertEqual(headers["content-security-policy"], CONTENT_SECURITY_POLICY)
        self.assertEqual(headers["x-content-type-options"], "nosniff")
        self.assertEqual(headers["x-frame-options"], "DENY")
        self.assertIn(b'<script type="module" src="chat.js"></script>', body)

    def test_no_inline_script_or_style(self) -> None:
        """
        The policy allows no inline script or style, and the page has none.
        """
        _, _, body = self.get("/")
        self.assertEqual(body.count(b"<script"), 1)
        self.assertNotIn(b"<style", body)
        self.assertNotIn(b" style=", body)
        for handler in (b"onclick", b"onload", b"onsubmit", b"javascript:"):
            self.assertNotIn(handler, body.lower())
        self.assertNotIn("'unsafe-inline'", CONTENT_SECURITY_POLICY)

    def test_script_never_writes_html(self) -> None:
        """
        The script puts what peers send in the page as text only.
        """
        _, headers, script = self.get("/chat.js")
        self.assertEqual(headers["content-type"], "text/javascript; charset=utf-8")
        for sink in (b"innerHTML", b"outerHTML", b"insertAdjacentHTML", b"eval("):
            self.assertNotIn(sink, script)
        self.assertNotIn(b"document.write", script)

    def test_style_and_icon(self) -> None:
        self.assertEqual(
            self.get("/chat.css")[1]["content-type"], "text/css; charset=utf-8"
        )
        self.assertEqual(self.get("/favicon.svg")[1]["content-type"], "image/svg+xml")

    def test_server_info(self) -> None:
        status, _, body = self.get("/server.json")
        self.assertEqual(status, 200)
        info = json.loads(body)
        self.assertEqual(info["rooms"], {"start": 10, "count": 5})
        self.assertEqual(
            info["results"]["207"]["54"],
            "enter failed: 54 ENTER_ROOM_FULL_USER (room is full)",
        )
        self.assertEqual(
            info["results"]["207"]["61"],
            "enter failed: 61 ROOM_INVALID_INDEX (no such room)",
        )
        self.assertNotIn("0", info["results"]["202"])

    def test_not_found(self) -> None:
        status, headers, _ = self.get("/etc/passwd")
        self.assertEqual(status, 404)
        self.assertEqual(headers["content-security-policy"], CONTENT_SECURITY_POLICY)

    def test_websocket_endpoint_without_upgrade(self) -> None:
        status, headers, body = self.get("/ws")
        self.assertEqual(status, 426)
        self.assertEqual(headers["upgrade"], "websocket")
        self.assertIn(b"WebSocket", body)


class OriginCheckTests(SynchronousTestCase):
    def test_valid(self) -> None:
        for origin in ("*", "https://game.example", "http://127.0.0.1:8080"):
            self.assertEqual(OriginPolicy.check(origin), origin)

    def test_invalid(self) -> None:
        for origin in ("game.example", "ftp://x", "https://x/path", "https://"):
            self.assertRaises(ValueError, OriginPolicy.check, origin)


class OptionsTests(SynchronousTestCase):
    def test_off_by_default(self) -> None:
        options = ChatOptions()
        options.parseOptions([])
        self.assertIsNone(options.host.web)
        self.assertEqual(options.host.web_origins, ())

    def test_web(self) -> None:
        options = ChatOptions()
        options.parseOptions(
            [
                "--web",
                "tcp:8080:interface=127.0.0.1",
                "--web-origins",
                "https://game.example, http://localhost:3000",
            ]
        )
        self.assertEqual(options.host.web, "tcp:8080:interface=127.0.0.1")
        self.assertEqual(
            options.host.web_origins,
            ("https://game.example", "http://localhost:3000"),
        )

    def test_bad_origin(self) -> None:
        options = ChatOptions()
        with self.assertRaises(usage.UsageError) as raised:
            options.parseOptions(["--web-origins", "game.example"])
        self.assertIn("--web-origins", str(raised.exception))
        self.assertIn("'game.example'", str(raised.exception))
