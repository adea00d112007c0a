"""
The byte layouts of a room stream's events.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.cluster.stream import (
    ChatEvent,
    EnterEvent,
    LeaveEvent,
    Member,
    StreamError,
    chat_event,
    header,
    member_record,
    parse_event,
    unique_id_field,
)

members = st.builds(
    Member, st.integers(0, 2**63 - 1), st.binary(min_size=1, max_size=32)
)
nodes = st.binary(min_size=1, max_size=200)
tokens = st.integers(0, 2**64 - 1)


class StreamTests(SynchronousTestCase):
    @given(nodes, tokens, st.binary())
    def test_chat_round_trip(self, node: bytes, token: int, packet: bytes) -> None:
        self.assertEqual(
            parse_event(chat_event(node, token, packet)),
            ChatEvent(node, token, packet),
        )

    @given(nodes, tokens, members, st.lists(members, max_size=5))
    def test_enter_round_trip(
        self, node: bytes, token: int, member: Member, present: list[Member]
    ) -> None:
        """
        The enter script concatenates the header and the records as they are.
        """
        data = (
            b"E"
            + header(node, token)
            + member_record(member)
            + b"".join(map(member_record, present))
        )
        self.assertEqual(parse_event(data), EnterEvent(node, token, member, present))

    def test_leave(self) -> None:
        self.assertEqual(parse_event(b"L" + unique_id_field(42)), LeaveEvent(42))

    def test_bad_events(self) -> None:
        for data in (
            b"",
            b"X123",
            b"L12",
            b"C\x05ab",
            b"E" + header(b"n", 1),
            b"E" + header(b"n", 1) + member_record(Member(1, b"abc"))[:-1],
        ):
            with self.assertRaises(StreamError, msg=repr(data)):
                parse_event(data)
