# -*- test-case-name: tests.test_loadtest -*-
"""
Checks before a run starts: that the server can be reached at all.
"""

from __future__ import annotations

import socket


class UnreachableError(Exception):
    """
    The server cannot be reached at all.
    """


def preflight(host: str, port: int, timeout: float) -> None:
    """
    Open and close one connection.

    @raise UnreachableError: with a clear reason if the server cannot be reached.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        raise UnreachableError(
            f"cannot connect to {host}:{port}: connection refused"
            " (is the server running, and listening there?)"
        ) from None
    except TimeoutError:
        raise UnreachableError(
            f"cannot connect to {host}:{port}: no answer within {timeout:g} s"
        ) from None
    except OSError as e:
        raise UnreachableError(
            f"cannot connect to {host}:{port}: {e.strerror or e}"
        ) from None
