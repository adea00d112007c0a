# -*- test-case-name: tests.test_loadtest -*-
"""
Checks before a run starts: that the server can be reached at all, and
whether its rooms can take the bots.
"""

from __future__ import annotations

import socket

from chatsvc.loadtest.config import RunConfig


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


def room_hints(config: RunConfig) -> list[str]:
    """
    Return why the bots of a chat or churn run will not all find a place in
    the server's rooms (as the run's C{server_rooms} and C{room_capacity}
    describe them), with what to change; empty when they will.
    """
    if config.scenario not in ("chat", "churn"):
        return []
    hints = []
    first = config.room_start
    last_used = first + config.rooms - 1
    last_there = first + config.server_rooms - 1
    if last_used > last_there:
        outside = sum(
            1 for index in config.bot_indices() if config.room_of(index) > last_there
        )
        hints.append(
            f"the bots are dealt over rooms {first} to {last_used}, but the server"
            f" has rooms {first} to {last_there} (--server-rooms"
            f" {config.server_rooms}, chatsvc's default unless given): {outside}"
            f" bots will get 61 (no such room) and the run will fail. Use --rooms"
            f" {config.server_rooms} or fewer, or a server started with --rooms"
            f" {config.rooms} (and tell chatsvc-bench: --server-rooms"
            f" {config.rooms})"
        )
    per_room = -(-config.users // config.rooms)
    if per_room > config.room_capacity:
        rooms_needed = -(-config.users // config.room_capacity)
        hints.append(
            f"up to {per_room} bots share a room, but a room of the server holds"
            f" {config.room_capacity} (--room-capacity {config.room_capacity},"
            f" chatsvc's default unless given): bots over that will get 54 (room"
            f" full) and the run will fail. Use --rooms {rooms_needed} or more"
            f" (the server needs as many), fewer --users, or a server started"
            f" with --room-capacity {per_room} (and tell chatsvc-bench:"
            f" --room-capacity {per_room})"
        )
    return hints
