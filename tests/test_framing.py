"""
Tests for L{chatsvc.protocol.framing}: framing, length checks and stream splitting.
"""

from __future__ import annotations

import struct
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.protocol import (
    HEADER_SIZE,
    Packet,
    PacketDecoder,
    ProtocolError,
    encode_packet,
    framing,
    pack_str,
    unpack_str,
)
from tests.support import c_helper

try:
    from chatsvc.protocol import _framing
except ImportError:
    _framing = None  # type: ignore[assignment]


def decode_all(decoder: PacketDecoder) -> list[Packet]:
    packets = []
    while (packet := decoder.next_packet()) is not None:
        packets.append(packet)
    return packets


def header(length: int, packet_id: int = 1, packet_type: int = 0) -> bytes:
    return struct.pack("<HHB", length, packet_id, packet_type)


packets = st.lists(
    st.builds(
        Packet,
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFF),
        st.binary(max_size=200),
    ),
    max_size=30,
)


class EncodeTests(SynchronousTestCase):
    def test_header_layout(self) -> None:
        """
        The header is length (whole packet), id, type, little-endian.
        """
        self.assertEqual(encode_packet(0x0102, b"xyz", 7), b"\x08\x00\x02\x01\x07xyz")

    def test_too_long(self) -> None:
        with self.assertRaises(ValueError):
            encode_packet(1, b"x" * 0xFFFF)

    def test_pack_str_pads_with_nul(self) -> None:
        self.assertEqual(pack_str("ab", 5), b"ab\0\0\0")
        self.assertEqual(pack_str(b"abcde", 5), b"abcde")
        self.assertEqual(pack_str("é", 3), b"\xc3\xa9\0")

    def test_pack_str_too_long(self) -> None:
        with self.assertRaises(ValueError):
            pack_str("abcdef", 5)

    def test_unpack_str(self) -> None:
        self.assertEqual(unpack_str(b"ab\0cd\0"), b"ab")
        self.assertEqual(unpack_str(b"abc"), b"abc")
        self.assertEqual(unpack_str(b"\0abc"), b"")


class DecoderTests(SynchronousTestCase):
    """
    L{PacketDecoder}, splitting packets with the C helper where it is built.
    """

    split_packets = framing._split_packets

    def setUp(self) -> None:
        self.patch(framing, "_split_packets", self.split_packets)

    def test_one_packet(self) -> None:
        decoder = PacketDecoder()
        decoder.feed(encode_packet(201, b"body", 3))
        self.assertEqual(decode_all(decoder), [Packet(201, 3, b"body")])
        self.assertEqual(decoder.buffered, 0)

    def test_empty_body(self) -> None:
        decoder = PacketDecoder()
        decoder.feed(encode_packet(215))
        self.assertEqual(decode_all(decoder), [Packet(215, 0, b"")])

    def test_thousand_packets_in_one_feed(self) -> None:
        stream = b"".join(encode_packet(1, b"%d" % i) for i in range(1000))
        decoder = PacketDecoder()
        decoder.feed(stream)
        self.assertEqual(
            decode_all(decoder), [Packet(1, 0, b"%d" % i) for i in range(1000)]
        )

    def test_byte_at_a_time(self) -> None:
        stream = (
            encode_packet(1, b"hello") + encode_packet(2, b"") + encode_packet(3, b"x")
        )
        decoder = PacketDecoder()
        got = []
        for i in range(len(stream)):
            decoder.feed(stream[i : i + 1])
            got.extend(decode_all(decoder))
        self.assertEqual(
            got, [Packet(1, 0, b"hello"), Packet(2, 0, b""), Packet(3, 0, b"x")]
        )

    def test_partial_packet_waits(self) -> None:
        data = encode_packet(1, b"abcdef")
        decoder = PacketDecoder()
        decoder.feed(data[:7])
        self.assertIsNone(decoder.next_packet())
        self.assertEqual(decoder.buffered, 7)
        decoder.feed(data[7:])
        self.assertEqual(decoder.next_packet(), Packet(1, 0, b"abcdef"))

    def test_length_too_small(self) -> None:
        """
        Length fields 0 to 4 are shorter than the header itself.
        """
        for length in range(HEADER_SIZE):
            decoder = PacketDecoder()
            decoder.feed(header(length))
            with self.assertRaises(ProtocolError) as raised:
                decoder.next_packet()
            self.assertIn(f"packet length {length}", raised.exception.reason)

    def test_length_above_maximum(self) -> None:
        for length in (1025, 8097, 65535):
            decoder = PacketDecoder(max_packet_size=1024)
            decoder.feed(header(length))
            with self.assertRaises(ProtocolError):
                decoder.next_packet()

    def test_maximum_is_allowed(self) -> None:
        decoder = PacketDecoder(max_packet_size=1024)
        decoder.feed(encode_packet(1, b"x" * (1024 - HEADER_SIZE)))
        self.assertEqual(len(decode_all(decoder)[0].body), 1024 - HEADER_SIZE)

    def test_error_sticks(self) -> None:
        """
        After a protocol error the decoder does not resynchronise.
        """
        decoder = PacketDecoder()
        decoder.feed(header(2) + encode_packet(1, b"ok"))
        self.assertRaises(ProtocolError, decoder.next_packet)
        self.assertRaises(ProtocolError, decoder.next_packet)

    def test_valid_packets_before_an_error_are_returned(self) -> None:
        decoder = PacketDecoder()
        decoder.feed(encode_packet(1, b"a") + encode_packet(2, b"b") + header(0))
        self.assertEqual(decoder.next_packet(), Packet(1, 0, b"a"))
        self.assertEqual(decoder.next_packet(), Packet(2, 0, b"b"))
        self.assertRaises(ProtocolError, decoder.next_packet)

    def test_close_inside_header(self) -> None:
        decoder = PacketDecoder()
        decoder.feed(b"\x10\x00")
        with self.assertRaises(ProtocolError) as raised:
            decoder.close()
        self.assertIn("closed inside a packet", raised.exception.reason)

    def test_close_between_packets(self) -> None:
        """
        A stream that ends after a whole packet closes cleanly.
        """
        decoder = PacketDecoder()
        decoder.feed(encode_packet(1))
        self.assertEqual(decode_all(decoder), [Packet(1, 0, b"")])
        decoder.close()
        self.assertIsNone(decoder.error)
        self.assertEqual(decoder.buffered, 0)

    def test_consumed_prefix_is_dropped(self) -> None:
        """
        Unread bytes are compacted when more data arrives, so the buffer does
        not grow with the number of packets received.
        """
        decoder = PacketDecoder()
        packet = encode_packet(1, b"x" * 100)
        for _ in range(1000):
            decoder.feed(packet + packet[:50])
            decode_all(decoder)
            decoder.feed(packet[50:])
            decode_all(decoder)
        self.assertEqual(decoder.buffered, 0)
        self.assertLess(len(decoder._buffer), 3 * len(packet))

    def test_bad_maximum(self) -> None:
        self.assertRaises(ValueError, PacketDecoder, 4)
        self.assertRaises(ValueError, PacketDecoder, 65536)


class DecoderPropertyTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(packets, st.data())
    def test_any_split_decodes_the_same(
        self, sent: list[Packet], data: st.DataObject
    ) -> None:
        """
        However a valid stream is cut into reads, the same packets come out.
        """
        stream = b"".join(encode_packet(p.packet_id, p.body, p.type) for p in sent)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
        decoder = PacketDecoder(max_packet_size=0xFFFF)
        received = []
        for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            decoder.feed(stream[start:end])
            received.extend(decode_all(decoder))
        self.assertEqual(received, sent)
        self.assertEqual(decoder.buffered, 0)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.binary(max_size=64), max_size=20))
    def test_garbage_raises_only_protocol_error(self, chunks: list[bytes]) -> None:
        """
        Random bytes yield packets or L{ProtocolError}, never anything else.
        """
        decoder = PacketDecoder()
        try:
            for chunk in chunks:
                decoder.feed(chunk)
                for packet in decode_all(decoder):
                    self.assertLessEqual(len(packet.body) + HEADER_SIZE, 1024)
            decoder.close()
        except ProtocolError:
            pass


class PythonDecoderTests(DecoderTests):
    """
    L{DecoderTests} splitting packets in Python, as where the C helper is not
    built.
    """

    split_packets = None


def decode_in_batches(
    stream: bytes, cuts: list[int], limits: list[int], maximum: int
) -> list[object]:
    """
    Feed C{stream} cut at C{cuts}, reading batches of the sizes C{limits}
    (cycled) after each feed and closing at the end; return everything the
    decoder showed: batches, their bytes, the counts, the error.
    """
    decoder = PacketDecoder(maximum)
    seen: list[object] = []
    reads = 0
    try:
        for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            seen.append(decoder.feed(stream[start:end]))
            while batch := decoder.read_batch(limits[reads % len(limits)]):
                reads += 1
                seen.append([(type(p), p.packet_id, p.type, p.body) for p in batch])
                seen.append(decoder.batch_bytes())
                seen.append((decoder.buffered, decoder.decoded_bytes))
        decoder.close()
    except ProtocolError as e:
        seen.append((e.reason, e.kind, decoder.buffered, decoder.decoded_bytes))
    return seen


class SplitPacketsTests(SynchronousTestCase):
    """
    The C helper L{chatsvc.protocol._framing}: the same packets, counts and
    errors as splitting in Python, and bad arguments refused.
    """

    def setUp(self) -> None:
        self.split_packets = c_helper(
            _framing, "chatsvc.protocol._framing"
        ).split_packets

    def both(
        self, stream: bytes, cuts: list[int], limits: list[int], maximum: int
    ) -> list[list[object]]:
        results = []
        for split in (self.split_packets, None):
            with patch.object(framing, "_split_packets", split):
                results.append(decode_in_batches(stream, cuts, limits, maximum))
        return results

    @settings(max_examples=300, deadline=None)
    @given(
        packets,
        st.lists(st.binary(max_size=12), max_size=3),
        st.data(),
    )
    def test_same_as_python(
        self, sent: list[Packet], garbage: list[bytes], data: st.DataObject
    ) -> None:
        """
        Valid packets, then maybe garbage, cut anywhere and read in batches
        of any size: the decoder shows the same with and without the helper.
        """
        stream = b"".join(p.wire() for p in sent) + b"".join(garbage)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
        limits = data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=4))
        maximum = data.draw(st.sampled_from([HEADER_SIZE, 64, 1024, 0xFFFF]))
        with_c, in_python = self.both(stream, cuts, limits, maximum)
        self.assertEqual(with_c, in_python)

    def test_packets_are_packets(self) -> None:
        packets, end, bad = self.split_packets(
            bytearray(encode_packet(201, b"hi", 7)), 0, 5, 1024, Packet
        )
        self.assertEqual((packets, end, bad), ([Packet(201, 7, b"hi")], 7, -1))
        self.assertIs(type(packets[0]), Packet)
        self.assertEqual(packets[0].body, b"hi")

    def test_bad_arguments(self) -> None:
        stream = encode_packet(201, b"hi")
        for args, error in [
            ((stream, 0, 5, 1024), TypeError),
            (("text", 0, 5, 1024, Packet), TypeError),
            ((stream, 0, 5, 1024, list), TypeError),
            ((stream, 0, 5, 1024, tuple[int, int]), TypeError),
            ((stream, 0, 5, 1024, Exception), TypeError),
            ((stream, -1, 5, 1024, Packet), ValueError),
            ((stream, len(stream) + 1, 5, 1024, Packet), ValueError),
            ((stream, 0, -1, 1024, Packet), ValueError),
            ((stream, 0, 5, 4, Packet), ValueError),
            ((stream, 0, 5, 0x10000, Packet), ValueError),
            ((stream, 2**70, 5, 1024, Packet), OverflowError),
            ((stream, "0", 5, 1024, Packet), TypeError),
        ]:
            with self.assertRaises(error):
                self.split_packets(*args)
