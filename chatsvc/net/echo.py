# -*- test-case-name: tests.test_echo -*-
"""
The echo stage (the tutorial's steps 1-3 and 7): raw bytes back, unframed.

A client that sends without reading is held back, not buffered without bound:
the transport's C{bufferSize} is set to the send-queue limit, and while more
than that is unsent this protocol, registered as the transport's producer,
stops reading from the client.
"""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from chatsvc.net.connection import LimitedFactory, ManagedConnection


@implementer(IPushProducer)
class RawEcho(ManagedConnection):
    """
    Writes back every byte it receives.

    @ivar received: bytes received so far.
    """

    received = 0

    def connectionMade(self) -> None:
        super().connectionMade()
        transport = self.transport
        limit = self.factory.config.send_queue_limit
        # The readiness reactors pause producers above bufferSize, the IOCP
        # reactor above writeBufferSize.
        transport.bufferSize = limit  # type: ignore[union-attr]
        transport.writeBufferSize = limit  # type: ignore[union-attr]
        transport.registerProducer(self, True)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        self.received += len(data)
        self.resetTimeout()
        self.transport.write(data)  # type: ignore[union-attr]

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def stopProducing(self) -> None:
        pass


class EchoFactory(LimitedFactory):
    """
    Builds L{RawEcho} connections.
    """

    protocol = RawEcho  # type: ignore[assignment]
