# -*- test-case-name: tests.test_framing -*-
"""
Framing of the tutorial's binary protocol, without any I/O.

Every packet is a 5-byte little-endian header (``PacketLength`` uint16 counting
the whole packet, ``PacketId`` uint16, ``Type`` uint8) followed by the body.
L{PacketDecoder} is fed bytes as they arrive and hands out complete packets;
L{encode_packet} builds one. Where the C helper L{chatsvc.protocol._framing}
is built (setup.py), it splits the packets off the decoder's buffer, with
the same results as the Python loop it stands in for.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final, NamedTuple

HEADER: Final = struct.Struct("<HHB")
HEADER_SIZE: Final = HEADER.size
MAX_WIRE_PACKET_SIZE: Final = 0xFFFF
DEFAULT_MAX_PACKET_SIZE: Final = 1024

_unpack_header_from = HEADER.unpack_from
_pack_header = HEADER.pack
_new_tuple = tuple.__new__

_Splitter = Callable[
    [bytes | bytearray, int, int, int, "type[Packet]"], tuple["list[Packet]", int, int]
]
_split_packets: _Splitter | None
try:
    from chatsvc.protocol._framing import split_packets as _split_packets
except ImportError:  # not built (see setup.py): packets are split in Python
    _split_packets = None


class ProtocolError(Exception):
    """
    The peer broke the wire protocol; the connection cannot be trusted further.

    @ivar reason: what was wrong, for the log.
    @ivar kind: a short category for metrics: C{length} (a length field out of
        range), C{truncated} (closed inside a packet), C{body} (a body of the
        wrong size for its id), C{unknown-id}.
    """

    def __init__(self, reason: str, kind: str = "body") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class Packet(NamedTuple):
    """
    One decoded packet: its id, its header's type byte and its body.
    """

    packet_id: int
    type: int
    body: bytes

    def wire(self) -> bytes:
        """
        Return the packet as it is on the wire.
        """
        return encode_packet(self.packet_id, self.body, self.type)


def encode_packet(packet_id: int, body: bytes = b"", packet_type: int = 0) -> bytes:
    """
    Return the wire form of one packet.

    @raise ValueError: if the packet would not fit the 16-bit length field.
    """
    length = HEADER_SIZE + len(body)
    if length > MAX_WIRE_PACKET_SIZE:
        raise ValueError(f"packet of {length} bytes does not fit the length field")
    return _pack_header(length, packet_id, packet_type) + body


class PacketDecoder:
    """
    An incremental decoder: C{feed} it bytes, take complete packets with
    C{next_packet} or C{read_batch}.

    The unread bytes are kept with a read offset, so taking a packet copies only
    that packet's body; the consumed prefix is dropped when more data arrives.
    A length field below the header size or above C{max_packet_size} raises
    L{ProtocolError}, and so does every later call: a broken stream stays broken.

    @ivar decoded_bytes: the bytes of all packets handed out so far.
    @ivar error: the framing error found in the stream, if any.
    """

    def __init__(self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        if not HEADER_SIZE <= max_packet_size <= MAX_WIRE_PACKET_SIZE:
            raise ValueError(
                f"max_packet_size must be {HEADER_SIZE}..{MAX_WIRE_PACKET_SIZE}"
            )
        self.max_packet_size = max_packet_size
        self._buffer: bytes | bytearray = b""
        self._offset = 0
        self.error: ProtocolError | None = None
        self._batch = (0, 0)
        self.decoded_bytes = 0

    @property
    def buffered(self) -> int:
        """
        The number of bytes received and not yet handed out as packets.
        """
        return len(self._buffer) - self._offset

    def feed(self, data: bytes) -> int:
        """
        Add bytes received from the peer; return the number of bytes received
        and not yet handed out (L{buffered}).
        """
        buffer = self._buffer
        offset = self._offset
        if offset == len(buffer):
            # Nothing pending: decode straight out of the received bytes.
            self._buffer = data
            self._offset = 0
            return len(data)
        if isinstance(buffer, bytearray):
            if offset:
                del buffer[:offset]
                self._offset = 0
            buffer += data
            return len(buffer)
        pending = bytearray(memoryview(buffer)[offset:])
        pending += data
        self._buffer = pending
        self._offset = 0
        return len(pending)

    def next_packet(self) -> Packet | None:
        """
        Return the next complete packet, or L{None} until more bytes arrive.

        @raise ProtocolError: if the stream is not valid framing.
        """
        packets = self.read_batch(1)
        return packets[0] if packets else None

    def read_batch(self, limit: int) -> list[Packet]:
        """
        Return up to C{limit} complete packets (none until more bytes arrive).

        Packets before a framing error are returned; the error is raised by
        the next call.

        @raise ProtocolError: if the stream is not valid framing.
        """
        if self.error is not None:
            raise self.error
        buffer = self._buffer
        if _split_packets is not None:
            return self._split(buffer, limit, _split_packets)
        if isinstance(buffer, bytearray):
            # Slicing a memoryview copies a body once, slicing a bytearray twice.
            with memoryview(buffer) as view:
                return self._read(view, limit, True)
        return self._read(buffer, limit, False)

    def _split(
        self,
        buffer: bytes | bytearray,
        limit: int,
        split: _Splitter,
    ) -> list[Packet]:
        start = self._offset
        packets, offset, bad_length = split(
            buffer, start, limit, self.max_packet_size, Packet
        )
        if bad_length >= 0:
            error = self._bad_length(bad_length)
            if not packets:
                raise error
        self.decoded_bytes += offset - start
        self._batch = (start, offset)
        self._offset = offset
        return packets

    def _bad_length(self, length: int) -> ProtocolError:
        self.error = ProtocolError(
            f"packet length {length} outside {HEADER_SIZE}..{self.max_packet_size}",
            "length",
        )
        return self.error

    def _read(self, buffer: bytes | memoryview, limit: int, copy: bool) -> list[Packet]:
        offset = self._offset
        size = len(buffer)
        maximum = self.max_packet_size
        packets: list[Packet] = []
        append = packets.append
        while len(packets) < limit and size - offset >= HEADER_SIZE:
            length, packet_id, packet_type = _unpack_header_from(buffer, offset)
            if length < HEADER_SIZE or length > maximum:
                error = self._bad_length(length)
                if packets:
                    break
                raise error
            end = offset + length
            if end > size:
                break
            body = buffer[offset + HEADER_SIZE : end]
            append(
                _new_tuple(
                    Packet, (packet_id, packet_type, bytes(body) if copy else body)
                )
            )
            offset = end
        self.decoded_bytes += offset - self._offset
        self._batch = (self._offset, offset)
        self._offset = offset
        return packets

    def batch_bytes(self) -> bytes:
        """
        The wire bytes of the packets the last L{read_batch} returned (until
        the next L{feed}).
        """
        start, end = self._batch
        buffer = self._buffer
        if isinstance(buffer, bytearray):
            with memoryview(buffer) as view:
                return bytes(view[start:end])
        return buffer[start:end]

    def close(self) -> None:
        """
        Declare the end of the stream.

        @raise ProtocolError: if a partial packet was left over.
        """
        if self.error is None and self.buffered:
            self.error = ProtocolError(
                f"connection closed inside a packet ({self.buffered} bytes pending)",
                "truncated",
            )
            raise self.error
