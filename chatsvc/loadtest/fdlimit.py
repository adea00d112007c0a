# -*- test-case-name: tests.test_loadtest -*-
"""
The open-file limit of the load processes: raised as far as the system lets
us, and checked against the connections one process will hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from chatsvc.loadtest.config import RunConfig, share_bots

try:
    import resource
except ImportError:  # pragma: no cover (Windows)
    resource = None  # type: ignore[assignment]

FD_MARGIN: Final = 32
"""File descriptors a load process needs besides its connections."""


@dataclass(frozen=True)
class FdLimit:
    """
    The open-file limit of the load processes.
    """

    soft: int | None
    hard: int | None
    raised_from: int | None

    def describe(self) -> str:
        """
        Return the limit as text for the user (C{"1024 (raised from 256)"}).
        """
        if self.soft is None:
            return "unknown"
        text = f"{self.soft}"
        if self.raised_from is not None:
            text += f" (raised from {self.raised_from})"
        if self.hard is not None and self.hard != self.soft:
            text += f", hard limit {self.hard}"
        return text


def raise_fd_limit() -> FdLimit:
    """
    Raise this process's soft RLIMIT_NOFILE to its hard limit (children
    inherit it); return the limits.
    """
    if resource is None:
        return FdLimit(None, None, None)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised_from = None
    target = max(soft, 1_048_576) if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            raised_from, soft = soft, target
        except (ValueError, OSError):
            pass
    return FdLimit(
        None if soft == resource.RLIM_INFINITY else soft,
        None if hard == resource.RLIM_INFINITY else hard,
        raised_from,
    )


def check_fd_limit(config: RunConfig, limit: FdLimit) -> str | None:
    """
    Return why the run cannot hold all its connections, or L{None}.
    """
    if limit.soft is None:
        return None
    per_process = max(len(part) for part in share_bots(config))
    if per_process + FD_MARGIN <= limit.soft:
        return None
    procs = -(-config.users // max(limit.soft - FD_MARGIN, 1))
    return (
        f"{per_process} connections in one load process need about"
        f" {per_process + FD_MARGIN} file descriptors, but the limit is"
        f" {limit.describe()}: use --procs {procs}"
        " or more, or raise the hard limit (ulimit -Hn, /etc/security/limits.conf)"
    )
