# -*- test-case-name: tests.test_client_cli -*-
"""
The terminal side of C{chatsvc-client}: what the session needs of a screen
(L{Screen}), and the plain line-by-line one for standard input and output
that are not a terminal (pipes, files). The interactive one is
L{chatsvc.client.console.Console}.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final, Protocol, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

_NEWLINE: Final = os.linesep.encode()


class Screen(Protocol):
    """
    Where a chat session shows lines and reads what the user types.
    """

    def show(self, line: str) -> None:
        """
        Show one line of text.
        """

    def pause_input(self) -> None:
        """
        Stop reading input.
        """

    def close(self) -> Deferred[None]:
        """
        Stop reading; the L{Deferred} fires once every line shown is written.
        """


class _StdioTransport(Protocol):
    def write(self, data: bytes) -> None: ...

    def loseConnection(self) -> None: ...

    def pauseProducing(self) -> None: ...


@implementer(IHalfCloseableProtocol)
class LineTerminal(LineReceiver):
    """
    Standard input and output as plain lines, for input that is not a
    terminal (a pipe, a file): input lines go to C{on_line}, the end of the
    input (or of the output) to C{on_end}; L{show} prints a line.
    """

    delimiter = b"\n"
    MAX_LENGTH = 64 * 1024

    def __init__(
        self,
        on_line: Callable[[str], None],
        on_end: Callable[[], None],
        encoding: str = "utf-8",
    ) -> None:
        self.on_line = on_line
        self.on_end = on_end
        self.encoding = encoding
        self._output_lost = False
        self._closed = False
        self._close_waiters: list[Deferred[None]] = []

    def show(self, line: str) -> None:
        """
        Print one line.
        """
        transport = self._transport
        if transport is not None and not self._output_lost:
            transport.write(line.encode(self.encoding, "replace") + _NEWLINE)

    def pause_input(self) -> None:
        """
        Stop reading standard input.
        """
        transport = self._transport
        if transport is not None:
            transport.pauseProducing()

    def close(self) -> Deferred[None]:
        """
        Stop reading, flush and close the output; the L{Deferred} fires once
        everything shown has been written.
        """
        waiter: Deferred[None] = Deferred()
        transport = self._transport
        if self._closed or self._output_lost or transport is None:
            waiter.callback(None)
        else:
            self._close_waiters.append(waiter)
            transport.loseConnection()
        return waiter

    @property
    def _transport(self) -> _StdioTransport | None:
        return cast("_StdioTransport | None", self.transport)

    def lineReceived(self, line: bytes) -> None:
        self.on_line(line.decode(self.encoding, "replace"))

    def lineLengthExceeded(self, line: bytes) -> None:
        self.show(f"! input line longer than {self.MAX_LENGTH} bytes; ignored")

    def readConnectionLost(self) -> None:
        self.on_end()

    def writeConnectionLost(self) -> None:
        # Nobody reads what we print any more: that ends the session too.
        self._output_lost = True
        self.on_end()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closed = True
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)


__all__ = ["LineTerminal", "Screen"]
