"""
The baseline of ``bench/echo.py``: the plainest Twisted echo server there is.

A C{Protocol} whose C{dataReceived} is C{self.transport.write(data)}, on the
default reactor, with nothing else: no framing, no limits, no flow control.
What chatsvc costs on top of Twisted is measured against this.

    python bench/peers/twisted_echo.py --port 11021 [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import sys

from twisted.internet import reactor
from twisted.internet.protocol import Protocol, ServerFactory


class Echo(Protocol):
    """
    Writes back every byte it receives.
    """

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Plain Twisted echo server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    factory = ServerFactory()
    factory.protocol = Echo
    factory.noisy = False
    reactor.listenTCP(args.port, factory, interface=args.host)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
