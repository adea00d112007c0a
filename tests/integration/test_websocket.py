"""
WebSocket sessions over real sockets (run on the IOCP reactor by
C{.ci/iocp.sh}): a WebSocket user, with Twisted's own WebSocket client, and a
TCP user chat in one room.
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.websocket import WebSocketClientEndpoint, WebSocketTransport

from chatsvc.content.chat import ChatConfig
from chatsvc.host.services import ChatService, chat_service
from chatsvc.host.settings import HostConfig
from chatsvc.net.config import NetConfig
from chatsvc.protocol import (
    ChatNotify,
    Event,
    NewUser,
    PacketDecoder,
    PacketId,
    Response,
    UserLeft,
    chat_request,
    enter_room_request,
    login_request,
    parse_event,
)
from tests.integration.base import LOOPBACK, IntegrationTestCase
from tests.support import PacketClient, reactor

ENTERED = Response(PacketId.ROOM_ENTER_RESPONSE, 0)


class WebSocketClient:
    """
    A WebSocket client of the chat: sends packets in binary messages and
    keeps the messages and the events it receives.
    """

    def __init__(self) -> None:
        self.transport: WebSocketTransport | None = None
        self.messages: list[bytes] = []
        self.events: list[Event] = []
        self.lost: Deferred[None] = Deferred()
        self._waiting: deque[tuple[Callable[[], bool], Deferred[None]]] = deque()

    def buildProtocol(self, url: str) -> WebSocketClient:
        return self

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        pass

    def pongReceived(self, payload: bytes) -> None:
        pass

    def textMessageReceived(self, message: str) -> None:
        raise AssertionError(f"the server sent text: {message!r}")

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        self.messages.append(bytes(data))
        decoder = PacketDecoder()
        decoder.feed(bytes(data))
        while (packet := decoder.next_packet()) is not None:
            self.events.append(parse_event(packet))
        if decoder.buffered:
            raise AssertionError("a message ended inside a packet")
        self._check()

    def connectionLost(self, reason: Failure) -> None:
        self.lost.callback(None)
        self._check()

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendBytesMessage(data)

    def wait_until(
        self, condition: Callable[[], bool], timeout: float = 20
    ) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if condition():
            d.callback(None)
            return d
        self._waiting.append((condition, d))
        return d.addTimeout(timeout, reactor)

    def _check(self) -> None:
        for _ in range(len(self._waiting)):
            condition, d = self._waiting.popleft()
            if d.called:
                continue
            if condition():
                d.callback(None)
            else:
                self._waiting.append((condition, d))


class WebSocketChatTests(IntegrationTestCase):
    async def start_chat(self, net: NetConfig | None = None) -> tuple[int, int]:
        self.service: ChatService = chat_service(
            LOOPBACK,
            net or NetConfig(),
            ChatConfig(chat_rate=0),
            reactor=reactor,
            host=HostConfig(web=LOOPBACK),
        )
        port = await self.start(self.service)
        assert self.service.web is not None
        web = await self.service.web.listening
        return port, int(web.getHost().port)

    async def websocket(self, port: int) -> WebSocketClient:
        endpoint = WebSocketClientEndpoint.new(reactor, f"ws://127.0.0.1:{port}/ws")
        client: WebSocketClient = await endpoint.connect(WebSocketClient())
        self.addCleanup(self._close, client)
        return client

    @staticmethod
    def _close(client: WebSocketClient) -> Deferred[None] | None:
        if client.lost.called or client.transport is None:
            return None
        client.transport.loseConnection()
        return client.lost

    async def test_websocket_and_tcp_users_chat(self) -> None:
        port, web_port = await self.start_chat()
        browser = await self.websocket(web_port)
        browser.send(login_request("web-user", "pw") + enter_room_request(2))
        await browser.wait_until(lambda: ENTERED in browser.events)
        [terminal] = await self.connect(port)
        terminal.send(login_request("tcp-user", "pw") + enter_room_request(2))
        await terminal.wait_until(lambda: ENTERED in terminal.events)
        await browser.wait_until(lambda: NewUser(2, b"tcp-user") in browser.events)

        browser.send(chat_request("from the web"))
        terminal.send(chat_request("from tcp"))
        for client in (browser, terminal):
            await client.wait_until(
                lambda c=client: (
                    ChatNotify(b"tcp-user", b"from tcp") in c.events
                    and ChatNotify(b"web-user", b"from the web") in c.events
                )
            )

        # Notifies of one turn reach a WebSocket member in one message.
        browser.messages.clear()
        terminal.send(b"".join(chat_request(f"burst {i}") for i in range(3)))
        await browser.wait_until(
            lambda: ChatNotify(b"tcp-user", b"burst 2") in browser.events
        )
        self.assertEqual(len(browser.messages), 1)
        self.assertEqual(len(browser.messages[0]), 3 * 295)

        assert browser.transport is not None
        browser.transport.loseConnection()
        await browser.lost
        await terminal.wait_until(lambda: UserLeft(1) in terminal.events)

    async def test_socket_send_buffer_applies_to_websockets(self) -> None:
        _, web_port = await self.start_chat(NetConfig(socket_send_buffer=48 * 1024))
        client = await self.websocket(web_port)
        client.send(login_request("bounded", "pw"))
        await client.wait_until(lambda: len(client.events) == 1)
        [session] = self.service.factory.connections.values()
        sock = session.transport.socket  # type: ignore[union-attr]
        # Linux reports twice the value set.
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self.assertIn(granted, (48 * 1024, 96 * 1024))

    async def test_frame_above_the_packet_limit(self) -> None:
        port, web_port = await self.start_chat(NetConfig(max_packet_size=512))
        client = await self.websocket(web_port)
        client.send(b"\x00" * 513)
        await client.lost
        self.assertEqual(self.service.factory.stats.protocol_errors["length"], 1)
        [terminal] = await self.connect(port)
        terminal.send(login_request("after", "pw"))
        await terminal.wait_until(lambda: len(terminal.events) == 1)
        self.assertEqual(terminal.events, [Response(PacketId.LOGIN_RESPONSE, 0)])

    async def test_max_connections_counts_websockets(self) -> None:
        port, web_port = await self.start_chat(NetConfig(max_connections=1))
        first: list[PacketClient] = await self.connect(port)
        refused = await self.websocket(web_port)
        await refused.lost
        self.assertEqual(self.service.factory.stats.refused, 1)
        first[0].send(login_request("still-here", "pw"))
        await first[0].wait_until(lambda: len(first[0].events) == 1)

    async def test_shutdown_closes_websocket_sessions(self) -> None:
        """
        A stopping server closes WebSocket sessions as it closes TCP ones,
        after what is queued for them.
        """
        _, web_port = await self.start_chat()
        client = await self.websocket(web_port)
        client.send(login_request("leaving", "pw"))
        await client.wait_until(lambda: len(client.events) == 1)
        await self.service.stopService()
        await client.lost
        self.assertEqual(self.service.factory.connections, {})
        self.assertEqual(client.events, [Response(PacketId.LOGIN_RESPONSE, 0)])
