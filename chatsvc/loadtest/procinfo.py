# -*- test-case-name: tests.test_procinfo -*-
"""
What Linux's C{/proc} says about a process and the machine: CPU time used by
one process and by the whole machine, and the cgroup a process is in.

C{chatsvc-bench} reads the CPU times over its measured window; the scripts of
C{bench/} read them too, and find their cgroup to limit a server's CPU. Every
reader has a pure parser beside it, so the formats are tested without Linux.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def parse_process_ticks(stat: str) -> int:
    """
    Return user + system CPU time, in clock ticks, from the text of
    C{/proc/PID/stat}.
    """
    # utime and stime, fields 14 and 15 of proc(5), follow "pid (comm)" and 11
    # more; the command may contain spaces and parentheses, so split after the
    # last ")".
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def parse_machine_ticks(stat: str) -> int:
    """
    Return user + nice + system CPU time of all cores, in clock ticks, from
    the first line of C{/proc/stat}.
    """
    fields = stat.split("\n", 1)[0].split()
    if fields[:1] != ["cpu"]:
        raise ValueError("no cpu line")
    return sum(int(field) for field in fields[1:4])


def _ticks_to_seconds(ticks: int) -> float:
    return ticks / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """
    Return the CPU time (user + system) process C{pid} has used; 0 where it
    cannot be read (not Linux, no such process).
    """
    try:
        return _ticks_to_seconds(
            parse_process_ticks((PROC / str(pid) / "stat").read_text("ascii"))
        )
    except (OSError, ValueError, IndexError):
        return 0.0


def parse_process_wakes(status: str) -> int:
    """
    Return how many times a process gave up its core to wait (for a socket,
    a timer) and was woken again, from the text of C{/proc/PID/status}: its
    C{voluntary_ctxt_switches}.
    """
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name == "voluntary_ctxt_switches":
            return int(value)
    raise ValueError("no voluntary_ctxt_switches")


def process_wakes(pid: int) -> int:
    """
    Return the wake-ups of process C{pid} so far (L{parse_process_wakes}),
    all its threads added up; 0 where they cannot be read.
    """
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
        return sum(
            parse_process_wakes((task / "status").read_text("ascii")) for task in tasks
        )
    except (OSError, ValueError):
        return 0


def machine_busy_seconds() -> float:
    """
    Return the user, nice and system CPU time of the whole machine, all cores
    added up; 0 where it cannot be read (not Linux).
    """
    try:
        stat = (PROC / "stat").read_text("ascii")
        return _ticks_to_seconds(parse_machine_ticks(stat))
    except (OSError, ValueError, IndexError):
        return 0.0


def parse_cgroup_mount(mounts: str, controller: str) -> Path | None:
    """
    Return where a cgroup v1 hierarchy with C{controller} is mounted, from the
    text of C{/proc/self/mounts}, or L{None}.
    """
    found = None
    for line in mounts.splitlines():
        _, where, kind, options, *_ = line.split()
        if kind == "cgroup" and controller in options.split(","):
            found = Path(where)
    return found


def parse_cgroup_path(cgroups: str, controller: str) -> str:
    """
    Return the cgroup of C{controller}'s hierarchy a process is in, from the
    text of C{/proc/PID/cgroup} (C{"/"} if it is not listed).
    """
    for line in cgroups.splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return "/"


def cgroup_v1(controller: str) -> tuple[Path, str]:
    """
    Return where the cgroup v1 hierarchy with C{controller} is mounted and
    which cgroup of it this process is in.

    @raise OSError: no such hierarchy is mounted.
    """
    mount = parse_cgroup_mount((PROC / "self/mounts").read_text("utf-8"), controller)
    if mount is None:
        raise OSError(f"no cgroup {controller} controller is mounted")
    return mount, parse_cgroup_path(
        (PROC / "self/cgroup").read_text("utf-8"), controller
    )


__all__ = [
    "cgroup_v1",
    "machine_busy_seconds",
    "parse_cgroup_mount",
    "parse_cgroup_path",
    "parse_machine_ticks",
    "parse_process_ticks",
    "process_cpu_seconds",
]
