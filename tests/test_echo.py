"""
Tests for L{chatsvc.net.echo}: raw echo with backpressure.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.net.config import NetConfig
from chatsvc.net.echo import EchoFactory, RawEcho


class RawEchoTests(SynchronousTestCase):
    def setUp(self) -> None:
        factory = EchoFactory(NetConfig(send_queue_limit=4096), MemoryReactorClock())
        addr = IPv4Address("TCP", "127.0.0.1", 1)
        self.echo: RawEcho = factory.buildProtocol(addr)  # type: ignore[assignment]
        self.transport = StringTransport(peerAddress=addr)
        self.echo.makeConnection(self.transport)

    def test_echoes_bytes(self) -> None:
        self.echo.dataReceived(b"\x00\x01garbage is fine")
        self.assertEqual(self.transport.value(), b"\x00\x01garbage is fine")

    def test_registered_as_producer_with_the_limit(self) -> None:
        """
        The transport pauses the echo once the send-queue limit is unsent.
        """
        self.assertIs(self.transport.producer, self.echo)
        self.assertTrue(self.transport.streaming)
        self.assertEqual(self.transport.bufferSize, 4096)  # type: ignore[attr-defined]

    def test_full_output_stops_reading(self) -> None:
        self.echo.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")
        self.echo.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")
