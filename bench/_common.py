"""
What ``bench/echo.py`` and ``bench/chat.py`` share: starting servers and load
processes pinned to cores at a niceness, waiting for a server's port, stopping
them all, and a few helpers of their reports.

The scripts run as ``python bench/echo.py``, which puts ``bench/`` first on
``sys.path``: they import this module as ``_common``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NoReturn

from chatsvc.loadtest.procinfo import cgroup_v1

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
REPO = BENCH.parent
SATURATED_LOAD_CPU = 85.0
"""Load CPU % (of one core) above which the load generator may be the limit."""
PR_SET_PDEATHSIG = 1

_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


# --- processes ---------------------------------------------------------------


def _child_setup(cores: frozenset[int] | None, nice: int) -> None:
    """
    In a new child: pin it to C{cores}, give it niceness C{nice}, and have it
    killed if we die.
    """
    if cores:
        os.sched_setaffinity(0, cores)
    if nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        # With autogroup scheduling a new session is a new group, and niceness
        # only counts within a group: give the group the same niceness.
        with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as group:
            group.write(str(nice))
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: list[str],
    cores: frozenset[int] | None,
    nice: int,
    stdout: IO[bytes] | int,
    stderr: IO[bytes] | int | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """
    Start a child in its own session (a Ctrl-C reaches only us; we stop it),
    pinned to C{cores} at niceness C{nice}, in directory C{cwd} (None: ours).
    C{stderr} None: ours.
    """
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=functools.partial(_child_setup, cores, nice),
    )


def stop(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """
    Terminate a child, kill it if it lingers past C{timeout} s, and reap it.
    """
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(
    process: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 20.0
) -> None:
    """
    Return once C{port} accepts connections; fail if the server exits first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"server exited ({process.returncode}):\n{tail}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5),
        ):
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not accept within {timeout:g} s; see {log}")


@contextlib.contextmanager
def serving(
    argv: list[str],
    port: int,
    cores: frozenset[int] | None,
    nice: int,
    log: Path,
    *,
    stderr: int | None = None,
    start_timeout: float = 20.0,
    stop_timeout: float = 5.0,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """
    Run the server C{argv} in directory C{cwd}, its output appended to C{log},
    from the moment it accepts on C{port} until the block ends.
    """
    with log.open("ab") as output:
        process = spawn(argv, cores, nice, output, stderr, cwd)
        try:
            wait_for_port(process, port, log, start_timeout)
            yield process
        finally:
            stop(process, stop_timeout)


CPU_PERIOD_US = 10_000
"""The period of a CPU limit: a throttled process waits at most this long."""

_CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class CpuLimit:
    """
    A cgroup whose processes together get a share of one core (CFS bandwidth
    control, period L{CPU_PERIOD_US}), and the cgroup this script runs in;
    made by L{cpu_limit}.
    """

    group: Path
    home: Path

    @contextlib.contextmanager
    def applied(self, pid: int) -> Iterator[None]:
        """
        Hold process C{pid} (all its threads) to the limit until the block
        ends, then give it back to the cgroup this script runs in.
        """
        (self.group / "cgroup.procs").write_text(str(pid))
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                (self.home / "cgroup.procs").write_text(str(pid))


def _cpu_hierarchy() -> tuple[Path, str]:
    """
    Return where the cgroup hierarchy with the cpu controller is mounted and
    which cgroup of it this process is in.

    @raise OSError: there is no cpu controller.
    """
    if (_CGROUP_ROOT / "cgroup.controllers").exists():
        if "cpu" not in (_CGROUP_ROOT / "cgroup.controllers").read_text().split():
            raise OSError("cgroup v2 without the cpu controller")
        return _CGROUP_ROOT, "/"
    return cgroup_v1("cpu")


@contextlib.contextmanager
def cpu_limit(percent: float) -> Iterator[CpuLimit]:
    """
    Make a cgroup whose processes together get C{percent} % of one core
    (cgroup v2's C{cpu.max} or v1's C{cpu.cfs_quota_us}), yield it, and remove
    it afterwards.

    @raise OSError: the machine does not let us (not root, no cpu controller).
    """
    mount, own = _cpu_hierarchy()
    home = mount / own.lstrip("/")
    quota = round(CPU_PERIOD_US * percent / 100)
    if mount == _CGROUP_ROOT:
        (home / "cgroup.subtree_control").write_text("+cpu")
        settings = {"cpu.max": f"{quota} {CPU_PERIOD_US}"}
    else:
        settings = {
            "cpu.cfs_period_us": str(CPU_PERIOD_US),
            "cpu.cfs_quota_us": str(quota),
        }
    group = home / f"chatsvc-bench-{os.getpid()}"
    group.mkdir()
    try:
        for key, value in settings.items():
            (group / key).write_text(value)
        yield CpuLimit(group, home)
    finally:
        # The kernel refuses while an exiting process is still counted.
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


@contextlib.contextmanager
def sysctl_at_least(name: str, value: int) -> Iterator[str]:
    """
    Raise the kernel setting C{name} (e.g. C{net.core.netdev_max_backlog}) to
    at least C{value} until the block ends, then restore it; yield what was
    done, for the report.

    @raise OSError: the machine does not let us (not root, read-only /proc).
    """
    path = Path("/proc/sys") / name.replace(".", "/")
    before = int(path.read_text())
    if before >= value:
        yield f"{name} is {before}"
        return
    path.write_text(str(value))
    try:
        yield f"{name} raised from {before} to {value} for the run"
    finally:
        path.write_text(str(before))


def twistd_command(python: str = sys.executable) -> list[str]:
    """
    Return the command that runs twistd on C{python}. Run it from the root of
    a chatsvc checkout: twistd finds the chatsvc plugins through the current
    directory's C{twisted/plugins} (an editable install does not put them on
    C{twisted.plugins}' path).
    """
    return [python, "-c", "from twisted.scripts.twistd import run; run()"]


def choose_cores(
    pin: bool, servers: str = "server", load: str = "load"
) -> tuple[frozenset[int] | None, frozenset[int] | None, str]:
    """
    Return the servers' cores (the first this process may use), the load's
    cores (the others) and a description naming them C{servers} and C{load}.
    """
    if not pin or not hasattr(os, "sched_getaffinity"):
        return None, None, "not pinned"
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None, "not pinned (one core)"
    return (
        frozenset(available[:1]),
        frozenset(available[1:]),
        (
            f"{servers} pinned to core {available[0]},"
            f" {load} to core(s) {', '.join(map(str, available[1:]))}"
        ),
    )


@contextlib.contextmanager
def log_directory(path: Path | None) -> Iterator[Path]:
    """
    Yield C{path}, made if need be, or else a temporary directory.
    """
    if path is None:
        with tempfile.TemporaryDirectory() as temporary:
            yield Path(temporary)
    else:
        path.mkdir(parents=True, exist_ok=True)
        yield path


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def exit_on_signals(*signums: signal.Signals) -> None:
    """
    Make Ctrl-C raise KeyboardInterrupt (even where SIGINT came in ignored) and
    each of C{signums} SystemExit, so that the children are stopped.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in signums:
        signal.signal(signum, _exit_on_signal)


def run_main(main: Callable[[], int]) -> NoReturn:
    """
    Exit with what C{main} returns, or with 130 on Ctrl-C.
    """
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every server and load process was stopped", file=sys.stderr)
        sys.exit(130)


# --- reports -----------------------------------------------------------------


def machine_summary() -> str:
    return (
        f"Python {platform.python_version()}, {platform.machine()},"
        f" {os.cpu_count()} cores."
    )


def range_pct(values: Sequence[float]) -> float:
    """
    Return the min-max range of C{values} as a percentage of their median (0
    when there are none or the median is 0).
    """
    middle = statistics.median(values) if values else 0
    return 100 * (max(values) - min(values)) / middle if middle else 0.0
