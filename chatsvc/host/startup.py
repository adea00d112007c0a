# -*- test-case-name: tests.test_twistd -*-
"""
Start-up errors as a user sees them: one line on standard error naming the
option, key or endpoint and the problem, and exit status 1; no usage text and
no traceback.
"""

from __future__ import annotations

import sys
from typing import NoReturn


class StartupError(Exception):
    """
    A stage cannot start; the message says why, in one line.
    """


def exit_with_error(command: str, message: str) -> NoReturn:
    """
    Print C{command: message} on standard error and exit with status 1.

    twistd sends C{sys.stderr} to its log once logging has begun, so this
    writes to the process's own standard error.
    """
    stream = sys.__stderr__ or sys.stderr
    print(f"{command}: {message}", file=stream, flush=True)
    raise SystemExit(1)
