"""
Tests for L{chatsvc.content.user_ids}: which user ids may log in.
"""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.content.user_ids import REFUSED_CATEGORIES, user_id_problem


class UserIdTests(SynchronousTestCase):
    def assertRefused(self, user_id: bytes, reason: str) -> None:
        problem = user_id_problem(user_id)
        self.assertIsNotNone(problem, user_id)
        self.assertIn(reason, problem or "")

    def test_ordinary_ids(self) -> None:
        for user_id in (
            "alice",
            "a",
            "홍길동",
            "ユーザー1",
            "Zoë",
            "two words",
            " padded ",
            "x" * 32,
            "가" * 10,  # 30 bytes
            "🙂",
        ):
            self.assertIsNone(user_id_problem(user_id.encode()), user_id)

    def test_empty(self) -> None:
        self.assertRefused(b"", "empty")

    def test_field_without_nul(self) -> None:
        """
        33 bytes means the field had no NUL: a C-string reader runs on.
        """
        self.assertIsNone(user_id_problem(b"x" * 32))
        self.assertRefused(b"x" * 33, "longer than 32 bytes")

    def test_invalid_utf8(self) -> None:
        for user_id in (
            b"\xffadmin",
            b"admin\xc3",  # truncated sequence
            b"\xc0\xafadmin",  # overlong '/'
            b"\xed\xa0\x80x",  # an encoded surrogate
        ):
            self.assertRefused(user_id, "not valid UTF-8")

    def test_blank(self) -> None:
        for user_id in (" ", " " * 32, "\u3000", "\u00a0 \u2003"):
            self.assertRefused(user_id.encode(), "blank")

    def test_control_and_format_characters(self) -> None:
        for user_id, code in (
            ("\x1b[31madmin", "U+001B"),
            ("ad\tmin", "U+0009"),
            ("admin\x7f", "U+007F"),
            ("admin\u0085", "U+0085"),
            ("admin\u200b", "U+200B"),
            ("ad\u200dmin", "U+200D"),
            ("\u202eexe.txt", "U+202E"),
            ("\u2066admin", "U+2066"),
            ("\ufeffadmin", "U+FEFF"),
            ("admin\u00ad", "U+00AD"),
            ("line\u2028two", "U+2028"),
            ("para\u2029two", "U+2029"),
            ("\n", "U+000A"),
        ):
            self.assertRefused(user_id.encode(), code)

    @given(st.binary(max_size=40))
    def test_accepted_ids_are_clean_text(self, user_id: bytes) -> None:
        if user_id_problem(user_id) is not None:
            return
        text = user_id.decode("utf-8")
        self.assertTrue(1 <= len(user_id) <= 32)
        self.assertFalse(text.isspace())
        self.assertFalse(
            any(unicodedata.category(c) in REFUSED_CATEGORIES for c in text)
        )

    @given(st.text(min_size=1).map(str.encode).filter(lambda b: len(b) <= 32))
    def test_printable_text_is_accepted(self, user_id: bytes) -> None:
        text = user_id.decode()
        clean = not text.isspace() and all(
            unicodedata.category(c) not in REFUSED_CATEGORIES for c in text
        )
        self.assertEqual(user_id_problem(user_id) is None, clean)
