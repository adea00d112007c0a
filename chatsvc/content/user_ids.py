# -*- test-case-name: tests.test_user_ids -*-
"""
Which user ids may log in.

Every member of a room sees the user ids of the others: the tutorial's C++
and C# clients read the 33-byte field as a C string, chatsvc-client and the
browser page as UTF-8 text. An id is refused (LOGIN_RESPONSE 33) unless it
shows as what it is, the same to everyone:

 - it is 1 to 32 bytes: a field filled to all 33 bytes has no NUL, and a
   client reading it as a C string runs on into the next field;
 - it is valid UTF-8 (C{\\xffadmin} would render like C{admin});
 - it is not blank: not only whitespace (spaces, U+3000, ...);
 - it has no control or format characters and no line or paragraph
   separators (Unicode categories Cc, Cf, Zl, Zp): no terminal escapes, no
   bidi overrides (U+202E), no zero-width characters (U+200B, U+200D), no
   U+2028.

Other characters, in any script, are fine.
"""

from __future__ import annotations

import unicodedata
from typing import Final

from chatsvc.protocol import MAX_USER_ID_LEN

#: Unicode general categories that may not appear in a user id.
REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp"})


def user_id_problem(user_id: bytes) -> str | None:
    """
    Return why C{user_id} (a LOGIN_REQUEST's id field up to its first NUL, or
    the whole field when it has none) may not log in, or L{None} if it may.
    """
    if not user_id:
        return "empty"
    if len(user_id) > MAX_USER_ID_LEN:
        return f"longer than {MAX_USER_ID_LEN} bytes (no NUL in its field)"
    try:
        text = user_id.decode("utf-8")
    except UnicodeDecodeError:
        return "not valid UTF-8"
    for char in text:
        category = unicodedata.category(char)
        if category in REFUSED_CATEGORIES:
            return f"contains U+{ord(char):04X} (category {category})"
    if text.isspace():
        return "blank"
    return None
