"""
A framed DEV_ECHO server on asyncio, or on uvloop with ``--uvloop``: the peer
of ``chatsvc-sendqueue`` in ``bench/echo.py``.

It does what chatsvc-sendqueue does per packet, minus Twisted: it splits the
stream into packets by their 5-byte little-endian header (uint16 length
including the header, uint16 id, uint8 type), takes each packet's body out,
answers every DEV_ECHO (id 1) with a newly encoded packet of the same id, type
and body, ignores other ids, and drops a connection whose length field is
outside 5..1024. Everything answered for one read leaves in one write.

    python bench/peers/asyncio_echo.py --port 11021 [--host 127.0.0.1] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import struct
import sys
from typing import Final

HEADER: Final = struct.Struct("<HHB")
HEADER_SIZE: Final = HEADER.size
DEV_ECHO: Final = 1
MAX_PACKET_SIZE: Final = 1024


class FramedEcho(asyncio.Protocol):
    """
    Echoes the DEV_ECHO packets of one connection.
    """

    def __init__(self) -> None:
        self._pending = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._pending + data if self._pending else data
        replies: list[bytes] = []
        offset = self._decode(buffer, replies)
        if offset < 0:
            self._transport.abort()  # type: ignore[union-attr]
            return
        self._pending = buffer[offset:]
        if replies:
            self._transport.write(  # type: ignore[union-attr]
                replies[0] if len(replies) == 1 else b"".join(replies)
            )

    @staticmethod
    def _decode(buffer: bytes, replies: list[bytes]) -> int:
        """
        Answer the complete packets in C{buffer} into C{replies}; return the
        number of bytes consumed, or -1 on a bad length field.
        """
        unpack_from = HEADER.unpack_from
        pack = HEADER.pack
        end = len(buffer)
        offset = 0
        while end - offset >= HEADER_SIZE:
            length, packet_id, packet_type = unpack_from(buffer, offset)
            if not HEADER_SIZE <= length <= MAX_PACKET_SIZE:
                return -1
            if end - offset < length:
                break
            body = buffer[offset + HEADER_SIZE : offset + length]
            if packet_id == DEV_ECHO:
                replies.append(pack(length, packet_id, packet_type) + body)
            offset += length
        return offset


async def serve(host: str, port: int) -> None:
    """
    Serve until cancelled.
    """
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FramedEcho, host, port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Framed DEV_ECHO server on asyncio.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    with contextlib.suppress(KeyboardInterrupt):
        if args.uvloop:
            import uvloop

            uvloop.run(serve(args.host, args.port))
        else:
            asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
