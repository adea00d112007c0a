"""
Tests for L{chatsvc.protocol}'s requests, responses and events: exact byte
layouts of the tutorial's protocol.
"""

from __future__ import annotations

import struct

from twisted.trial.unittest import SynchronousTestCase

from chatsvc.protocol import (
    ChatNotify,
    ChatRequest,
    Echo,
    EnterRoomRequest,
    LeaveRoomRequest,
    LoginRequest,
    NewUser,
    Packet,
    PacketDecoder,
    PacketId,
    ProtocolError,
    Response,
    Result,
    UnknownPacket,
    UserLeft,
    UserList,
    chat_notify,
    chat_request,
    encode_packet,
    enter_room_request,
    leave_room_request,
    leave_user_notify,
    login_request,
    new_user_notify,
    parse_event,
    parse_request,
    result_response,
    user_list_notifies,
)


def body(packet: bytes) -> bytes:
    return packet[5:]


class RequestTests(SynchronousTestCase):
    def test_login_is_71_bytes(self) -> None:
        packet = login_request("alice", "pw")
        self.assertEqual(len(packet), 71)
        self.assertEqual(packet[:5], struct.pack("<HHB", 71, 201, 0))
        self.assertEqual(
            parse_request(201, body(packet)), LoginRequest(b"alice", b"pw")
        )

    def test_login_wrong_length(self) -> None:
        for size in (0, 65, 67, 100):
            self.assertRaises(ProtocolError, parse_request, 201, b"a" * size)

    def test_login_full_width_id(self) -> None:
        """
        An id that fills its 33-byte array has no NUL and is taken whole.
        """
        request = parse_request(201, b"i" * 33 + b"p" * 33)
        self.assertEqual(request, LoginRequest(b"i" * 33, b"p" * 33))

    def test_enter(self) -> None:
        packet = enter_room_request(-7)
        self.assertEqual(len(packet), 9)
        self.assertEqual(parse_request(206, body(packet)), EnterRoomRequest(-7))
        self.assertRaises(ProtocolError, parse_request, 206, b"abc")
        self.assertRaises(ProtocolError, parse_request, 206, b"abcde")

    def test_leave(self) -> None:
        self.assertEqual(leave_room_request(), b"\x05\x00\xd7\x00\x00")
        self.assertEqual(parse_request(215, b""), LeaveRoomRequest())
        self.assertRaises(ProtocolError, parse_request, 215, b"x")

    def test_chat_is_262_bytes(self) -> None:
        packet = chat_request("hi")
        self.assertEqual(len(packet), 262)
        self.assertEqual(parse_request(221, body(packet)), ChatRequest(b"hi"))

    def test_chat_short_array_is_the_message(self) -> None:
        self.assertEqual(parse_request(221, b"hey"), ChatRequest(b"hey"))

    def test_chat_wrong_length(self) -> None:
        self.assertRaises(ProtocolError, parse_request, 221, b"")
        self.assertRaises(ProtocolError, parse_request, 221, b"x" * 258)

    def test_unknown_and_internal_ids(self) -> None:
        for packet_id in (0, 1, 11, 12, 30, 199, 202, 1001, 65535):
            self.assertIsNone(parse_request(packet_id, b""))


class ResponseTests(SynchronousTestCase):
    def test_results_are_7_bytes(self) -> None:
        for packet_id in (202, 207, 216, 222):
            packet = result_response(PacketId(packet_id), Result.ENTER_ROOM_FULL_USER)
            self.assertEqual(packet, struct.pack("<HHBH", 7, packet_id, 0, 54))

    def test_chat_notify_layout(self) -> None:
        """
        The reference client reads UserID at body[0:33] and Msg at body[33:290].
        """
        packet = chat_notify(b"alice", b"hello")
        self.assertEqual(len(packet), 295)
        self.assertEqual(packet[:5], struct.pack("<HHB", 295, 223, 0))
        self.assertEqual(body(packet)[0:33], b"alice".ljust(33, b"\0"))
        self.assertEqual(body(packet)[33:290], b"hello".ljust(257, b"\0"))

    def test_new_user_layout(self) -> None:
        packet = new_user_notify(0x0102030405060708, b"bob")
        self.assertEqual(len(packet), 14 + 3)
        self.assertEqual(
            body(packet), struct.pack("<qb", 0x0102030405060708, 3) + b"bob"
        )

    def test_leave_user_layout(self) -> None:
        packet = leave_user_notify(42)
        self.assertEqual(packet, struct.pack("<HHBq", 13, 217, 0, 42))

    def test_user_list_layout(self) -> None:
        [packet] = user_list_notifies([(1, b"a"), (2, b"bc")])
        self.assertEqual(
            body(packet),
            b"\x02"
            + struct.pack("<qb", 1, 1)
            + b"a"
            + struct.pack("<qb", 2, 2)
            + b"bc",
        )

    def test_user_list_split(self) -> None:
        users = [(i, b"u" * 33) for i in range(200)]
        packets = list(user_list_notifies(users))
        self.assertTrue(all(len(p) <= 1024 for p in packets))
        self.assertTrue(all(p[5] <= 127 for p in packets))
        decoded = [u for p in packets for u in parse_event(self.decode(p)).users]  # type: ignore[union-attr]
        self.assertEqual(decoded, users)

    def test_user_list_at_most_127(self) -> None:
        users = [(i, b"") for i in range(300)]
        packets = list(user_list_notifies(users, max_packet_size=4096))
        self.assertEqual([p[5] for p in packets], [127, 127, 46])

    def test_empty_room_is_an_empty_list(self) -> None:
        self.assertEqual(list(user_list_notifies([])), [encode_packet(209, b"\0")])
        empty = self.decode(encode_packet(209, b"\0"))
        self.assertEqual(parse_event(empty), UserList(()))

    def decode(self, data: bytes) -> Packet:
        decoder = PacketDecoder()
        decoder.feed(data)
        packet = decoder.next_packet()
        assert packet is not None
        return packet


class EventTests(SynchronousTestCase):
    def parse(self, data: bytes) -> object:
        decoder = PacketDecoder()
        decoder.feed(data)
        packet = decoder.next_packet()
        assert packet is not None
        return parse_event(packet)

    def test_round_trips(self) -> None:
        self.assertEqual(
            self.parse(result_response(PacketId.LOGIN_RESPONSE, Result.NONE)),
            Response(PacketId.LOGIN_RESPONSE, 0),
        )
        self.assertEqual(self.parse(chat_notify(b"a", b"m")), ChatNotify(b"a", b"m"))
        self.assertEqual(self.parse(new_user_notify(5, b"x")), NewUser(5, b"x"))
        self.assertEqual(self.parse(leave_user_notify(5)), UserLeft(5))
        self.assertEqual(self.parse(encode_packet(1, b"e")), Echo(b"e"))
        self.assertEqual(
            self.parse(encode_packet(999, b"?")), UnknownPacket(Packet(999, 0, b"?"))
        )
        self.assertEqual(
            self.parse(next(user_list_notifies([(1, b"a")]))), UserList(((1, b"a"),))
        )

    def test_malformed(self) -> None:
        for data in (
            encode_packet(223, b"short"),
            encode_packet(202, b"\x00"),
            encode_packet(208, struct.pack("<qb", 1, 5) + b"ab"),
            encode_packet(209, b""),
            encode_packet(209, b"\x02" + struct.pack("<qb", 1, 1) + b"a"),
            encode_packet(217, b"\x00"),
            encode_packet(208, b"\x00"),
        ):
            self.assertRaises(ProtocolError, self.parse, data)
