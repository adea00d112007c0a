"""
Tests for L{chatsvc.net.websocket}: WebSocket connections as sessions, driven
through Twisted's HTTP server and WebSocket upgrade over a
L{StringTransport}, with wsproto as the client.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    RejectConnection,
    Request,
    TextMessage,
)

from chatsvc.content.chat import ChatConfig
from chatsvc.host.metrics import StageCollector
from chatsvc.net.config import NetConfig
from chatsvc.net.session import Session, SessionFactory
from chatsvc.net.websocket import partial_packet
from chatsvc.protocol import Packet, encode_packet
from chatsvc.web.site import chat_site
from tests.support import HalfCloseTransport
from tests.test_session import RecordingApp

HOST = "127.0.0.1:8080"
ORIGIN = b"http://127.0.0.1:8080"


class WebSocketPeer:
    """
    A browser's side of one connection to the site: wsproto encodes and
    decodes, the site's HTTP channel runs on a L{HalfCloseTransport}.
    """

    def __init__(self, site: object, port: int, origin: bytes | None = ORIGIN) -> None:
        address = IPv4Address("TCP", "127.0.0.1", port)
        self.client = WSConnection(ConnectionType.CLIENT)
        self.transport = HalfCloseTransport(peerAddress=address)
        self.channel = site.buildProtocol(address)  # type: ignore[attr-defined]
        self.channel.makeConnection(self.transport)
        headers = [] if origin is None else [(b"origin", origin)]
        self.write(
            self.client.send(Request(host=HOST, target="/ws", extra_headers=headers))
        )

    def write(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def send(self, event: Event) -> None:
        self.write(self.client.send(event))

    def events(self) -> list[Event]:
        data = self.transport.value()
        self.transport.clear()
        self.client.receive_data(data)
        return list(self.client.events())

    def messages(self) -> list[bytes]:
        return [bytes(e.data) for e in self.events() if isinstance(e, BytesMessage)]


class WebSocketTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.app = RecordingApp(echo=True)
        self.config = NetConfig(
            max_packet_size=64, send_queue_limit=4096, input_buffer_limit=1024
        )
        self.factory = SessionFactory(self.app, self.config, self.reactor)
        self.site = chat_site(self.factory, ChatConfig(), reactor=self.reactor)

    def open(self, port: int = 5000, origin: bytes | None = ORIGIN) -> WebSocketPeer:
        peer = WebSocketPeer(self.site, port, origin)
        [accepted] = peer.events()
        self.assertIsInstance(accepted, AcceptConnection)
        return peer

    def session(self) -> Session:
        [session] = self.factory.connections.values()
        assert isinstance(session, Session)
        return session

    def turn(self) -> None:
        self.factory.pump.run_now()


class FramingTests(WebSocketTestCase):
    def test_a_session_of_the_network_layer(self) -> None:
        """
        The connection is a session of the same factory as TCP ones, named
        as a WebSocket in the log.
        """
        self.open(port=5001)
        session = self.session()
        self.assertEqual(session.transport_kind, "websocket")
        self.assertEqual(session.peer, "127.0.0.1:5001 via websocket")
        self.assertEqual(self.app.log, [("connected", session.session_id, None)])

    def test_packets_of_one_message(self) -> None:
        """
        A binary message may hold several whole packets; each reaches the
        application, in order.
        """
        peer = self.open()
        peer.send(BytesMessage(encode_packet(1, b"one") + encode_packet(2, b"two")))
        self.turn()
        self.assertEqual(
            self.app.packets(), [Packet(1, 0, b"one"), Packet(2, 0, b"two")]
        )

    def test_a_turn_of_output_is_one_message(self) -> None:
        """
        Everything sent to a session in one reactor turn leaves as one
        binary message.
        """
        peer = self.open()
        peer.send(BytesMessage(encode_packet(1, b"a")))
        peer.send(BytesMessage(encode_packet(2, b"b")))
        self.turn()
        self.assertEqual(
            peer.messages(), [encode_packet(1, b"a") + encode_packet(2, b"b")]
        )

    def test_packet_split_over_frames(self) -> None:
        """
        A message sent in several frames is one message.
        """
        peer = self.open()
        data = encode_packet(7, b"fragmented")
        peer.send(BytesMessage(data[:3], message_finished=False))
        peer.send(BytesMessage(data[3:], message_finished=True))
        self.turn()
        self.assertEqual(self.app.packets(), [Packet(7, 0, b"fragmented")])

    def test_message_ending_inside_a_packet(self) -> None:
        """
        A message holding part of a packet is a protocol error: counted,
        logged, and the connection closed with code 1002.
        """
        peer = self.open()
        data = encode_packet(1, b"whole") + encode_packet(2, b"partial")
        with capturedLogs() as events:
            peer.send(BytesMessage(data[:-1]))
        [close] = [e for e in peer.events() if isinstance(e, CloseConnection)]
        self.assertEqual(close.code, 1002)
        self.assertTrue(peer.transport.disconnecting)
        self.assertEqual(self.factory.stats.protocol_errors["truncated"], 1)
        [warning] = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertIn("ends inside a packet", warning["reason"])
        self.assertIn("via websocket", warning["peer"])

    def test_bad_length_field(self) -> None:
        """
        A length field out of range is the decoder's protocol error, as on
        TCP; the packets before it are handled.
        """
        peer = self.open()
        peer.send(BytesMessage(encode_packet(1, b"ok") + b"\x02\x00\x01\x00\x00"))
        self.turn()
        self.assertEqual(self.app.packets(), [Packet(1, 0, b"ok")])
        self.assertEqual(self.factory.stats.protocol_errors["length"], 1)
        self.assertTrue(peer.transport.aborted)

    def test_text_message_refused(self) -> None:
        peer = self.open()
        peer.send(TextMessage("hello"))
        [close] = [e for e in peer.events() if isinstance(e, CloseConnection)]
        self.assertEqual(close.code, 1003)
        self.assertEqual(self.app.packets(), [])

    def test_peer_closes(self) -> None:
        """
        The browser's close frame is answered and the session ends.
        """
        peer = self.open()
        session = self.session()
        peer.send(CloseConnection(1000))
        [close] = [e for e in peer.events() if isinstance(e, CloseConnection)]
        self.assertEqual(close.code, 1000)
        self.assertTrue(peer.transport.disconnecting)
        peer.channel.connectionLost(None)
        self.assertEqual(self.app.log[-1], ("disconnected", session.session_id, None))
        self.assertEqual(self.factory.connections, {})

    def test_closing_the_session_sends_a_close_frame(self) -> None:
        peer = self.open()
        self.session().close("test")
        [close] = [e for e in peer.events() if isinstance(e, CloseConnection)]
        self.assertEqual(close.code, 1000)
        self.assertTrue(peer.transport.disconnecting)

    def test_partial_packet(self) -> None:
        self.assertIsNone(partial_packet(b"", 64))
        self.assertIsNone(partial_packet(encode_packet(1, b"x") * 3, 64))
        self.assertIsNone(partial_packet(b"\x00\x00\x01\x00\x00", 64), "a bad length")
        error = partial_packet(encode_packet(1, b"x")[:-1], 64)
        assert error is not None
        self.assertEqual(error.kind, "truncated")


class LimitTests(WebSocketTestCase):
    def test_frame_above_the_packet_limit(self) -> None:
        """
        A frame larger than the largest packet is refused (code 1009) as soon
        as its bytes pass the limit, before the rest of it arrives.
        """
        peer = self.open()
        frame = peer.client.send(BytesMessage(b"\x00" * 100_000))
        peer.write(frame[: 14 + 65])
        [close] = [e for e in peer.events() if isinstance(e, CloseConnection)]
        self.assertEqual(close.code, 1009)
        self.assertTrue(peer.transport.disconnecting)
        self.assertEqual(self.factory.stats.protocol_errors["length"], 1)
        peer.write(frame[14 + 65 :])
        self.assertEqual(self.app.packets(), [])

    def test_frame_at_the_packet_limit(self) -> None:
        peer = self.open()
        peer.send(BytesMessage(encode_packet(1, b"x" * 59)))
        self.turn()
        self.assertEqual(self.app.packets(), [Packet(1, 0, b"x" * 59)])

    def test_message_above_the_input_limit(self) -> None:
        """
        Frames of a message each within the limit, their sum above the
        input buffer limit: refused too.
        """
        peer = self.open()
        chunk = encode_packet(1, b"y" * 59)
        for _ in range(1024 // len(chunk)):
            peer.send(BytesMessage(chunk, message_finished=False))
        self.assertEqual(
            [e for e in peer.events() if isinstance(e, CloseConnection)], []
        )
        peer.send(BytesMessage(chunk, message_finished=False))
        [close] = [e for e in peer.events() if isinstance(e, CloseConnection)]
        self.assertEqual(close.code, 1009)

    def test_max_connections_counts_websockets(self) -> None:
        """
        A WebSocket over C{--max-connections} is refused with 1013 (try
        again later); the refusal is counted.
        """
        factory = SessionFactory(self.app, NetConfig(max_connections=1), self.reactor)
        site = chat_site(factory, ChatConfig(), reactor=self.reactor)
        tcp = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4000))
        assert tcp is not None
        tcp.makeConnection(HalfCloseTransport())
        peer = WebSocketPeer(site, 5000)
        events = peer.events()
        self.assertIsInstance(events[0], AcceptConnection)
        [close] = [e for e in events if isinstance(e, CloseConnection)]
        self.assertEqual(close.code, 1013)
        self.assertEqual(factory.stats.refused, 1)
        self.assertEqual(len(factory.connections), 1)

    def test_idle_timeout(self) -> None:
        factory = SessionFactory(self.app, NetConfig(idle_timeout=5), self.reactor)
        site = chat_site(factory, ChatConfig(), reactor=self.reactor)
        peer = WebSocketPeer(site, 5000)
        self.assertIsInstance(peer.events()[0], AcceptConnection)
        self.reactor.advance(4)
        peer.send(BytesMessage(encode_packet(1)))
        self.reactor.advance(0)  # the turn that handles the packet resets the timer
        self.reactor.advance(4)
        self.assertFalse(peer.transport.aborted)
        self.reactor.advance(2)
        self.assertTrue(peer.transport.aborted)
        self.assertEqual(factory.stats.idle_timeouts, 1)


class BackpressureTests(WebSocketTestCase):
    def test_full_transport_pauses_the_session(self) -> None:
        """
        When the TCP transport's buffer is full, the session stops reading
        and queues its output; when it drains, the output leaves as one
        message and reading resumes.
        """
        peer = self.open()
        channel = peer.transport.producer
        channel.pauseProducing()
        self.assertEqual(peer.transport.producerState, "paused")
        peer.send(BytesMessage(encode_packet(1, b"held")))
        self.turn()
        self.assertEqual(peer.messages(), [])
        self.assertEqual(self.session().pending_output, 0)
        channel.resumeProducing()
        self.turn()
        self.assertEqual(peer.transport.producerState, "producing")
        self.assertEqual(peer.messages(), [encode_packet(1, b"held")])

    def test_slow_consumer_is_cut_off(self) -> None:
        """
        A browser that does not read while more than the send-queue limit is
        queued for it is cut off as a slow consumer, as on TCP.
        """
        peer = self.open()
        session = self.session()
        self.turn()
        peer.transport.producer.pauseProducing()
        with capturedLogs() as events:
            for _ in range(4096 // 60 + 1):
                session.send(encode_packet(1, b"z" * 55))
        self.assertTrue(peer.transport.aborted)
        self.assertEqual(self.factory.stats.slow_consumers, 1)
        [warning] = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertIn("via websocket", warning["peer"])


class MetricsTests(WebSocketTestCase):
    def test_connections_by_transport(self) -> None:
        self.open(5000)
        self.open(5001)
        tcp = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4000))
        assert tcp is not None
        tcp.makeConnection(HalfCloseTransport())
        [family] = [
            f
            for f in StageCollector(self.factory).collect()
            if f.name == "chatsvc_connections"
        ]
        self.assertEqual(
            {s.labels["transport"]: s.value for s in family.samples},
            {"tcp": 1, "websocket": 2},
        )


class OriginTests(WebSocketTestCase):
    def handshake(self, origin: bytes | None, **kwargs: object) -> list[Event]:
        site = chat_site(self.factory, ChatConfig(), reactor=self.reactor, **kwargs)  # type: ignore[arg-type]
        peer = WebSocketPeer(site, 5000, origin)
        return peer.events()

    def assertRefused(self, events: list[Event]) -> None:
        self.assertIsInstance(events[0], RejectConnection)
        assert isinstance(events[0], RejectConnection)
        self.assertEqual(events[0].status_code, 403)

    def test_same_origin(self) -> None:
        self.assertIsInstance(self.handshake(ORIGIN)[0], AcceptConnection)

    def test_same_host_behind_a_tls_proxy(self) -> None:
        self.assertIsInstance(
            self.handshake(b"https://127.0.0.1:8080")[0], AcceptConnection
        )

    def test_other_origin_refused(self) -> None:
        with capturedLogs() as events:
            self.assertRefused(self.handshake(b"https://evil.example"))
        self.assertEqual(self.factory.connections, {})
        [warning] = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(warning["origin"], "https://evil.example")

    def test_other_port_refused(self) -> None:
        self.assertRefused(self.handshake(b"http://127.0.0.1:9999"))

    def test_listed_origin(self) -> None:
        events = self.handshake(
            b"https://game.example", origins=["https://Game.example/"]
        )
        self.assertIsInstance(events[0], AcceptConnection)
        self.assertRefused(
            self.handshake(b"https://other.example", origins=["https://game.example"])
        )

    def test_any_origin(self) -> None:
        events = self.handshake(b"https://anywhere.example", origins=["*"])
        self.assertIsInstance(events[0], AcceptConnection)

    def test_no_origin(self) -> None:
        """
        Clients that are not browsers send no origin, and are let in.
        """
        self.assertIsInstance(self.handshake(None)[0], AcceptConnection)
