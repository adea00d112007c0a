"""
Sessions over TLS on loopback: the send queue's writes must go through the
TLS layer, whether the listener speaks TLS from the start or a plain TCP
connection switches to it with C{startTLS}.
"""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.internet.protocol import ClientFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from chatsvc.host.applications import PacketEcho
from chatsvc.net.config import NetConfig
from chatsvc.net.session import Session, SessionFactory
from chatsvc.protocol import Echo, Packet, PacketId, encode_packet
from tests.integration.base import IntegrationTestCase
from tests.support import PacketClient, reactor


@implementer(IOpenSSLContextFactory)
class ServerTLS:
    """
    The server side of TLS with a self-signed certificate for localhost, made
    for the test.
    """

    def __init__(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .sign(key, hashes.SHA256())
        )
        self._context = SSL.Context(SSL.TLS_SERVER_METHOD)
        self._context.use_certificate(certificate)
        self._context.use_privatekey(key)

    def getContext(self) -> SSL.Context:
        return self._context


class StartTLSEcho:
    """
    The send-queue stage on a plain TCP listener that switches every
    connection to TLS as it opens.
    """

    def __init__(self) -> None:
        self.echo = PacketEcho()
        self.tls = ServerTLS()

    def connected(self, session: Session) -> None:
        session.transport.startTLS(self.tls)  # type: ignore[union-attr]
        self.echo.connected(session)

    def packets_received(self, session: Session, packets: list[Packet]) -> None:
        self.echo.packets_received(session, packets)

    def end_of_turn(self) -> None:
        self.echo.end_of_turn()

    def disconnected(self, session: Session, reason: Failure) -> None:
        self.echo.disconnected(session, reason)


class TLSClient(PacketClient):
    """
    A packet client that starts TLS as soon as it is connected.
    """

    def __init__(self, start_tls: bool) -> None:
        super().__init__()
        self.start_tls = start_tls
        self.connected_: Deferred[TLSClient] = Deferred()

    def connectionMade(self) -> None:
        super().connectionMade()
        if self.start_tls:
            self.transport.startTLS(  # type: ignore[union-attr]
                ssl.CertificateOptions(verify=False)
            )
        self.connected_.callback(self)


class TLSTests(IntegrationTestCase):
    async def connect_tls(self, port: int, start_tls: bool) -> TLSClient:
        client = TLSClient(start_tls)
        factory = ClientFactory.forProtocol(lambda: client)
        if start_tls:
            reactor.connectTCP("127.0.0.1", port, factory)
        else:
            reactor.connectSSL(
                "127.0.0.1", port, factory, ssl.CertificateOptions(verify=False)
            )
        await client.connected_
        self.clients.append(client)
        return client

    async def echo_round_trips(self, port: int, start_tls: bool) -> None:
        client = await self.connect_tls(port, start_tls)
        for n in range(20):
            client.send(encode_packet(PacketId.DEV_ECHO, b"secret %d" % n))
            await client.wait_events(n + 1)
        self.assertEqual(client.events, [Echo(b"secret %d" % n) for n in range(20)])

    def listen(self, factory: SessionFactory, tls: bool) -> int:
        if tls:
            port: Any = reactor.listenSSL(
                0, factory, ServerTLS(), interface="127.0.0.1"
            )
        else:
            port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    async def test_start_tls(self) -> None:
        """
        A TCP connection switched to TLS is written through its TLS layer,
        never straight to its socket.
        """
        factory = SessionFactory(StartTLSEcho(), NetConfig(), reactor)
        await self.echo_round_trips(self.listen(factory, tls=False), start_tls=True)

    async def test_tls_listener(self) -> None:
        factory = SessionFactory(PacketEcho(), NetConfig(), reactor)
        await self.echo_round_trips(self.listen(factory, tls=True), start_tls=False)
