# -*- test-case-name: tests.test_loadtest -*-
"""
What a load test runs: the settings every load process gets, and how the bots
are shared out between processes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

SCENARIOS: Final = ("echo", "login", "chat", "churn")


@dataclass(frozen=True)
class RunConfig:
    """
    The settings of one run (the command line, checked).

    @ivar window: with C{rate} 0, messages (or echoes) each bot keeps in
        flight: it sends the next when one comes back (closed loop).
    @ivar duration: seconds of the measured phase (for C{login}: seconds the
        logged-in connections are held open after the storm).
    @ivar server_rooms: how many rooms the server has, from C{room_start} on
        (checked before the run: L{chatsvc.loadtest.preflight.room_hints}).
    @ivar room_capacity: how many users a room of the server holds.
    @ivar server_pid: a server process on this machine whose CPU time is
        measured over the window (Linux only).
    @ivar connect: C{host:port} of several servers (the nodes of a cluster)
        to spread the bots over, instead of C{host} and C{port}.
    """

    scenario: str
    host: str = "127.0.0.1"
    port: int = 11021
    users: int = 100
    rooms: int = 10
    room_start: int = 0
    server_rooms: int = 10
    room_capacity: int = 4
    rate: float = 1.0
    window: int = 1
    duration: float = 10.0
    ramp_up: float = 0.0
    warmup: float = 0.0
    drain: float = 5.0
    timeout: float = 10.0
    password: str = "pw"
    user_prefix: str = "bench"
    user_start: int = 0
    redis: str | None = None
    redis_key_prefix: str = ""
    procs: int = 1
    size: int = 32
    cycle_messages: int = 5
    churn_pause: float = 0.05
    connect_concurrency: int = 100
    loop: str = "auto"
    fast_path: bool = True
    server_pid: int | None = None
    connect: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}")
        if self.users < 1 or self.rooms < 1 or self.procs < 1:
            raise ValueError("users, rooms and procs must be at least 1")
        if self.procs > self.users:
            raise ValueError("more processes than users")
        if self.rate < 0 or self.window < 1:
            raise ValueError("rate must be 0 or more and window at least 1")
        if min(self.duration, self.ramp_up, self.warmup, self.drain) < 0:
            raise ValueError("durations must be 0 or more")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")

    @property
    def room_numbers(self) -> range:
        """
        The room numbers bots are spread over.
        """
        return range(self.room_start, self.room_start + self.rooms)

    def bot_indices(self) -> range:
        """
        The global indices of the bots (their user ids are prefix + index).
        """
        return range(self.user_start, self.user_start + self.users)

    def room_of(self, index: int) -> int:
        """
        Return the room of bot C{index}: bots are dealt over rooms in turn.
        """
        return self.room_start + (index - self.user_start) % self.rooms

    def address(self, index: int) -> tuple[str, int]:
        """
        The server bot C{index} connects to: with several, each room's bots
        are spread over them in turn.
        """
        if not self.connect:
            return self.host, self.port
        turn = (index - self.user_start) // self.rooms
        host, _, port = self.connect[turn % len(self.connect)].rpartition(":")
        return host.strip("[]"), int(port)

    def to_json(self) -> dict[str, Any]:
        """
        Return the settings as JSON-ready data (the Redis URL's password masked).
        """
        data = asdict(self)
        if self.redis:
            from chatsvc.host.redis_login import RedisURL

            data["redis"] = str(RedisURL.parse(self.redis))
        return data


def share_bots(config: RunConfig) -> list[list[int]]:
    """
    Return the bot indices each process runs.

    Chat and churn keep each room's bots in one process where there are at
    least as many rooms as processes (a room's bookkeeping then stays local);
    otherwise, and for echo and login, bots are dealt out in turn.
    """
    parts: list[list[int]] = [[] for _ in range(config.procs)]
    by_room = config.scenario in ("chat", "churn") and config.rooms >= config.procs
    for position, index in enumerate(config.bot_indices()):
        if by_room:
            part = (config.room_of(index) - config.room_start) % config.procs
        else:
            part = position % config.procs
        parts[part].append(index)
    return parts
