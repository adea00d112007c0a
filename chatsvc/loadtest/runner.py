# -*- test-case-name: tests.test_loadtest -*-
"""
The I/O of the load tester: bots on asyncio (uvloop when installed) in one or
more load processes, and the parent that starts them, keeps them in step and
adds up their results.

The parent never runs bots itself. It starts C{--procs} worker processes
(C{fork} where there is one, else C{spawn}), each with its share of the bots
(L{share_bots}), over two one-way pipes each. A worker connects its bots and
lets them set up (log in, enter), says C{ready}, and waits for C{go}: the
parent sends it when every worker is ready, so the measured phase starts
together. Every second a worker sends a L{Tick}; at the end its
L{WorkerResult}. C{stop} (Ctrl-C in the parent) ends the measured phase early.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Final

from chatsvc.loadtest.batch import NotifyBatch, available
from chatsvc.loadtest.bot import Bot, BotState, Counters, Directory, SentLog
from chatsvc.loadtest.config import RunConfig, share_bots
from chatsvc.loadtest.network import read_counters
from chatsvc.loadtest.scenarios import SCENARIO_BOTS, BotFailedError
from chatsvc.loadtest.stats import (
    Summary,
    Tick,
    TimelineBuilder,
    TrackerReport,
    WorkerResult,
    drain_counts,
    encode,
    merge,
    new_histogram,
)

try:
    import resource
except ImportError:  # pragma: no cover (Windows)
    resource = None  # type: ignore[assignment]

TICK: Final = 1.0
QUIET: Final = 0.25
"""Seconds without a new notify after which a drained run is over."""
FD_MARGIN: Final = 32
"""File descriptors a load process needs besides its connections."""


class UnreachableError(Exception):
    """
    The server cannot be reached at all.
    """


@dataclass(frozen=True)
class FdLimit:
    """
    The open-file limit of the load processes.
    """

    soft: int | None
    hard: int | None
    raised_from: int | None

    def describe(self) -> str:
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


def process_cpu_seconds(pid: int) -> float:
    """
    Return the CPU time (user + system) process C{pid} has used (Linux
    C{/proc}; 0 where it cannot be read).
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime, fields 14 and 15 of proc(5), follow "pid (comm)" and 11 more.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """
    Return the user, nice and system CPU time of the whole machine, all cores
    added up (Linux C{/proc/stat}; 0 where it cannot be read).
    """
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return 0.0
    user, nice, system = (int(field) for field in fields[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


# --- one load process ------------------------------------------------------------


class Link(asyncio.Protocol):
    """
    One bot's connection: moves bytes between the transport and the L{Bot}.
    """

    def __init__(self, bot: Bot, worker: Worker) -> None:
        self.bot = bot
        self.worker = worker
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = worker.loop.create_future()
        self._paused = False
        self._closing = False
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.closed.done()

    @property
    def paused(self) -> bool:
        return self._paused

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.bot.connection_made()
        counters = self.worker.counters
        counters.connected += 1

    def data_received(self, data: bytes) -> None:
        bot = self.bot
        bot.receive(data, time.monotonic_ns())
        out = bot.data_to_send()
        if out:
            self.transport.write(out)  # type: ignore[union-attr]
        if bot.violation is not None:
            self.worker.violated(bot)
            self._closing = True
            self.transport.abort()  # type: ignore[union-attr]
        if self._waiters:
            self._check()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        bot = self.bot
        state = bot.state
        self.worker.counters.connected -= 1
        bot.connection_lost()
        if not self._closing and not self.worker.finishing:
            reason = f": {exc}" if exc else ""
            self.worker.counters.error(
                f"connection closed by the server while {state.value}{reason}"
            )
        if not self.closed.done():
            self.closed.set_result(None)
        self._check()

    def poke(self) -> None:
        """
        Check the waiting conditions again (something other than data changed).
        """
        if self._waiters:
            self._check()

    def _check(self) -> None:
        waiters = self._waiters
        keep = []
        for condition, future in waiters:
            if future.done():
                continue
            if condition():
                future.set_result(None)
            elif self.closed.done():
                future.set_exception(BotFailedError())
            else:
                keep.append((condition, future))
        self._waiters = keep

    def send(self, data: bytes) -> None:
        if self.open:
            self.transport.write(data)  # type: ignore[union-attr]

    async def _until(self, condition: Callable[[], bool], deadline: float) -> bool:
        if condition():
            return True
        if not self.open:
            raise BotFailedError
        future: asyncio.Future[None] = self.worker.loop.create_future()
        self._waiters.append((condition, future))
        try:
            await asyncio.wait_for(future, max(deadline - self.worker.loop.time(), 0))
        except TimeoutError:
            return False
        return True

    async def wait(self, condition: Callable[[], bool], what: str) -> None:
        worker = self.worker
        if not await self._until(condition, worker.loop.time() + worker.config.timeout):
            if self.bot.violation is None:
                worker.counters.error(
                    f"no answer within {worker.config.timeout:g} s: {what}"
                )
            raise BotFailedError

    async def drain(self, condition: Callable[[], bool]) -> bool:
        worker = self.worker
        deadline = (
            worker.drain_deadline
            if worker.stopping
            else worker.loop.time() + worker.config.timeout
        )
        try:
            return await self._until(condition, deadline)
        except BotFailedError:
            return False

    async def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), 5)


class Worker:
    """
    One load process: its bots, their counters and the phases of the run.
    """

    def __init__(
        self,
        config: RunConfig,
        worker_id: int,
        indices: list[int],
        outbox: Connection | None,
    ) -> None:
        self.config = config
        self.worker_id = worker_id
        self.indices = indices
        self.outbox = outbox
        self.loop = asyncio.get_running_loop()
        self.counters = Counters()
        self.log = SentLog()
        self.directory = Directory(config.user_prefix)
        self.finishing = False
        self.drain_deadline = float("inf")
        self.go = asyncio.Event()
        self.stop_requested = asyncio.Event()
        self._stopping = asyncio.Event()
        self._arrived: set[int] = set()
        self._at_start: set[int] = set()
        self._all_arrived: asyncio.Future[None] = self.loop.create_future()
        self._answered = 0
        self._all_answered: asyncio.Future[None] = self.loop.create_future()
        self._last_answer_ns = 0
        self._go_ns = 0
        self._window: dict[str, float] = {}
        self._started = 0.0
        self._connect_slots = asyncio.Semaphore(
            max(1, config.connect_concurrency // config.procs)
        )
        self._random = random.Random(worker_id)
        self._links: list[Link] = []
        self._interval = new_histogram()
        self._latency = new_histogram()
        self._login_latency = new_histogram()
        self.result = WorkerResult(
            worker=worker_id,
            bots=len(indices),
            loop=type(self.loop).__module__.split(".")[0],
            parser="python",
        )
        pinned = 1 if config.scenario == "chat" else None
        batch = None
        if config.batch_parser and config.scenario in ("chat", "churn") and available():
            batch = NotifyBatch(self.directory, config.user_start, config.users)
            self.result.parser = "numpy"
        self.bots = [
            Bot(
                index,
                self.directory,
                self.counters,
                self.log,
                password=config.password.encode("utf-8"),
                room=config.room_of(index),
                echo_size=config.size,
                pinned_first=pinned,
                strict_existing=config.scenario == "chat",
                batch=batch,
            )
            for index in indices
        ]

    # --- what the scenarios use (chatsvc.loadtest.scenarios.Driver) ---------------

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def now_ns(self) -> int:
        return time.monotonic_ns()

    def clock(self) -> float:
        return self.loop.time()

    def random(self) -> float:
        return self._random.random()

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0 or self.stopping:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def ramp(self, bot: Bot) -> None:
        config = self.config
        if config.ramp_up > 0:
            share = (bot.index - config.user_start) / config.users
            await self.sleep(share * config.ramp_up)

    async def connect(self, bot: Bot) -> Link:
        config = self.config
        counters = self.counters
        async with self._connect_slots:
            try:
                _, link = await asyncio.wait_for(
                    self.loop.create_connection(
                        lambda: Link(bot, self), config.host, config.port
                    ),
                    config.timeout,
                )
            except (OSError, TimeoutError) as e:
                self._connect_failed(e)
                raise BotFailedError from None
        self.result.connects_ok += 1
        with contextlib.suppress(OSError):
            sock = link.transport.get_extra_info("socket")  # type: ignore[union-attr]
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._links.append(link)
        if counters.connected > self.result.peak_connected:
            self.result.peak_connected = counters.connected
        return link

    def _connect_failed(self, error: BaseException) -> None:
        result = self.result
        result.connects_failed += 1
        if isinstance(error, TimeoutError):
            text = f"connect timed out after {self.config.timeout:g} s"
        elif isinstance(error, OSError) and error.errno is not None:
            text = f"connect failed: [Errno {error.errno}] {error.strerror}"
        else:
            text = f"connect failed: {error}"
        self.counters.error(text)
        if result.first_failure is None:
            result.first_failure = text
            result.open_at_first_failure = self.counters.connected

    async def ready(self, bot: Bot) -> None:
        self._at_start.add(bot.index)
        self._arrive(bot)
        await self.go.wait()

    def _arrive(self, bot: Bot) -> None:
        if bot.index in self._arrived:
            return
        self._arrived.add(bot.index)
        if len(self._arrived) == len(self.bots) and not self._all_arrived.done():
            self._all_arrived.set_result(None)

    async def until_stopping(self) -> None:
        await self._stopping.wait()

    def answered(self, bot: Bot, now_ns: int | None) -> None:
        self._answered += 1
        if now_ns is not None:
            self._last_answer_ns = max(self._last_answer_ns, now_ns)
        self._check_answered()

    def _check_answered(self) -> None:
        if self._answered >= len(self._at_start) and not self._all_answered.done():
            self._all_answered.set_result(None)

    def violated(self, bot: Bot) -> None:
        """
        C{bot} found a protocol violation: show it at once.
        """
        if self.counters.violation_count <= 3:
            print(
                f"chatsvc-bench: protocol violation by the server: {bot.violation}",
                file=sys.stderr,
                flush=True,
            )

    # --- the run ---------------------------------------------------------------------

    async def run(self) -> WorkerResult:
        """
        Run this process's bots through every phase; return the result.
        """
        scenario = SCENARIO_BOTS[self.config.scenario]
        self._started = self.loop.time()
        ticker = self.loop.create_task(self._tick())
        tasks = [
            self.loop.create_task(self._run_bot(scenario, bot)) for bot in self.bots
        ]
        try:
            await self._all_arrived
            self._sample_peaks()
            self._send(("ready", None))
            await self.go.wait()
            await self._measure()
            self.drain_deadline = self.loop.time() + self.config.drain
            self._stopping.set()
            for link in self._links:
                link.poke()
            await self._drain(tasks)
        finally:
            ticker.cancel()
            for task in tasks:
                task.cancel()
        await self._finish()
        return self.result

    async def _run_bot(self, scenario: Any, bot: Bot) -> None:
        try:
            await scenario(self, bot)
        except BotFailedError:
            pass
        finally:
            self._arrive(bot)

    async def _measure(self) -> None:
        config = self.config
        if config.scenario == "login":
            # Every bot that got here sent its login at "go"; the window
            # lasts until the last answer.
            self._check_answered()
            await self._interruptible(self._all_answered, config.timeout + 1)
            end_ns = self._last_answer_ns or time.monotonic_ns()
            self._window_end((end_ns - self._go_ns) / 1e9)
            self.result.window["sent"] = len(self._at_start)
            self.result.window["received"] = self.counters.logins
            if self._last_answer_ns:
                self.result.login_span_ns = (self._go_ns, end_ns)
            self._sample_peaks()
            await self._interruptible(None, config.duration)
            return
        if config.warmup > 0:
            await self._interruptible(None, config.warmup)
            self._window_start()
        await self._interruptible(None, config.duration)
        self._window_end()
        self._sample_peaks()

    def _snapshot(self) -> dict[str, float]:
        counters = self.counters
        pid = self.config.server_pid
        return {
            "time": self.loop.time(),
            "cpu": time.process_time(),
            "sent": counters.sent,
            "received": counters.received,
            "server_cpu": process_cpu_seconds(pid) if pid else 0.0,
            "machine_busy": machine_busy_seconds() if pid else 0.0,
        }

    def _window_start(self) -> None:
        """
        Open the measured window: note the counters and start recording.
        """
        self.counters.recording = True
        self._window = self._snapshot()

    def _window_end(self, seconds: float | None = None) -> None:
        """
        Close the measured window: what happened since L{_window_start}.
        """
        end = self._snapshot()
        start = self._window
        self.result.window = {
            "seconds": end["time"] - start["time"] if seconds is None else seconds,
            "sent": end["sent"] - start["sent"],
            "received": end["received"] - start["received"],
            "server_cpu_seconds": end["server_cpu"] - start["server_cpu"],
            "machine_busy_seconds": end["machine_busy"] - start["machine_busy"],
        }
        self.result.cpu_seconds = end["cpu"] - start["cpu"]

    async def _interruptible(
        self, awaitable: asyncio.Future[None] | None, seconds: float
    ) -> None:
        """
        Wait for C{awaitable} (or just sleep) at most C{seconds}, or until
        the parent asks to stop.
        """
        waits: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self.stop_requested.wait())
        ]
        if awaitable is not None:
            waits.append(awaitable)
        try:
            await asyncio.wait(waits, timeout=seconds, return_when="FIRST_COMPLETED")
        finally:
            waits[0].cancel()

    async def _drain(self, tasks: list[asyncio.Task[None]]) -> None:
        """
        Let the bots finish (their last answers and notifies) until the drain
        deadline, then wait for the notifies in flight to stop coming.
        """
        remaining = self.drain_deadline - self.loop.time()
        pending = [task for task in tasks if not task.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=max(remaining, 0))
            if still:
                self.counters.error(
                    f"{len(still)} bots still busy at the end of the drain period"
                )
        received = -1
        while received != self.counters.received:
            received = self.counters.received
            if self.loop.time() + QUIET > self.drain_deadline:
                break
            await asyncio.sleep(QUIET)

    async def _finish(self) -> None:
        self.finishing = True
        counters = self.counters
        counters.recording = False
        for bot in self.bots:
            if bot.state in (BotState.IN_ROOM, BotState.LEAVING) or bot.echoing:
                bot.finish_visit()
                bot.tracker.close_all(check_tail=True)
            else:
                bot.tracker.close_all(check_tail=False)
        self._send_tick(self._started)
        links = [link for link in self._links if not link.closed.done()]
        await asyncio.gather(*(link.close() for link in links))
        drain_counts(counters.latency, self._latency)
        drain_counts(counters.login_latency, self._login_latency)
        result = self.result
        tracker = TrackerReport()
        for bot in self.bots:
            report = bot.tracker
            tracker.duplicated += report.duplicated
            tracker.reordered += report.reordered
            tracker.unexpected += report.unexpected
            tracker.missing.extend(report.missing())
            tracker.tails.extend(report.tails)
        result.tracker = tracker
        result.log = self.log
        result.logins = counters.logins
        result.enters = counters.enters
        result.cycles = counters.cycles
        result.sent = counters.sent
        result.received = counters.received
        result.foreign = counters.foreign
        result.skipped = counters.skipped
        result.results = dict(counters.results)
        result.errors = dict(counters.errors)
        result.violations = list(counters.violations)
        result.violation_count = counters.violation_count
        result.latency = encode(self._latency)
        result.login_latency = encode(self._login_latency)

    def _sample_peaks(self) -> None:
        counters = self.counters
        result = self.result
        result.peak_connected = max(result.peak_connected, counters.connected)
        result.peak_logged_in = max(result.peak_logged_in, counters.logged_in)
        result.peak_in_room = max(result.peak_in_room, counters.in_room)

    async def _tick(self) -> None:
        start = self._started
        while True:
            await asyncio.sleep(TICK - (self.loop.time() - start) % TICK)
            self._send_tick(start)

    def _send_tick(self, start: float) -> None:
        """
        Tell the parent the gauges, the totals and this second's latencies.
        """
        counters = self.counters
        self._sample_peaks()
        interval = self._interval
        interval.reset()
        drain_counts(counters.latency, interval, self._latency)
        if self.config.scenario == "login":
            drain_counts(counters.login_latency, interval, self._login_latency)
        self._send(
            (
                "tick",
                Tick(
                    worker=self.worker_id,
                    elapsed=self.loop.time() - start,
                    connected=counters.connected,
                    logged_in=counters.logged_in,
                    in_room=counters.in_room,
                    sent=counters.sent,
                    received=counters.received,
                    logins=counters.logins,
                    cycles=counters.cycles,
                    errors=sum(counters.errors.values()) + counters.violation_count,
                    histogram=encode(interval) if interval.total_count else None,
                ),
            )
        )

    def _send(self, message: tuple[str, Any]) -> None:
        if self.outbox is not None:
            with contextlib.suppress(OSError, ValueError):
                self.outbox.send(message)

    def control(self, message: tuple[str, Any]) -> None:
        """
        Handle a message from the parent.
        """
        kind = message[0]
        if kind == "go" and not self.go.is_set():
            # Before any bot wakes up: they start sending as soon as it is set.
            self._go_ns = time.monotonic_ns()
            if self.config.warmup <= 0 or self.config.scenario == "login":
                self._window_start()
            self.go.set()
        elif kind == "stop":
            self.stop_requested.set()


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """
    Return a new event loop: uvloop when installed (C{auto}) or asked for.
    """
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise SystemExit(
                    "chatsvc-bench: --loop uvloop, but uvloop is not installed"
                    " (pip install 'chatsvc[bench]')"
                ) from None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def worker_main(
    config: RunConfig,
    worker_id: int,
    indices: list[int],
    inbox: Connection,
    outbox: Connection,
) -> None:
    """
    The body of one load process.
    """
    with contextlib.suppress(ValueError, AttributeError):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop = new_loop(config.loop)
    asyncio.set_event_loop(loop)

    async def main() -> WorkerResult:
        worker = Worker(config, worker_id, indices, outbox)

        def listen() -> None:
            while True:
                try:
                    message = inbox.recv()
                except (EOFError, OSError):
                    message = ("stop", None)
                loop.call_soon_threadsafe(worker.control, message)
                if message[0] == "stop":
                    return

        threading.Thread(target=listen, daemon=True).start()
        return await worker.run()

    try:
        result = loop.run_until_complete(main())
    except BaseException as e:
        traceback.print_exc()
        with contextlib.suppress(OSError, ValueError):
            outbox.send(("fatal", f"load process {worker_id} failed: {e!r}"))
        raise SystemExit(1) from None
    finally:
        loop.close()
    outbox.send(("result", result))
    outbox.close()


# --- the parent --------------------------------------------------------------------


@dataclass
class _Process:
    process: Any
    inbox: Connection
    outbox: Connection
    ready: bool = False
    result: WorkerResult | None = None
    gone: bool = False


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def run(
    config: RunConfig,
    *,
    environment: dict[str, Any],
    progress: Callable[[dict[str, Any], str], None] | None = None,
) -> Summary:
    """
    Run the load test in C{config.procs} processes; return the merged result.

    @param progress: called once a second with the latest timeline row and
        the phase (C{"setup"}, C{"run"}, C{"drain"}).
    """
    context = _context()
    processes: list[_Process] = []
    for worker_id, indices in enumerate(share_bots(config)):
        to_worker_read, to_worker_write = context.Pipe(duplex=False)
        from_worker_read, from_worker_write = context.Pipe(duplex=False)
        process = context.Process(
            target=worker_main,
            args=(config, worker_id, indices, to_worker_read, from_worker_write),
            name=f"chatsvc-bench-{worker_id}",
            daemon=True,
        )
        process.start()
        to_worker_read.close()
        from_worker_write.close()
        processes.append(_Process(process, from_worker_read, to_worker_write))

    timeline = TimelineBuilder(len(processes))
    start = time.monotonic()
    network_before = read_counters()
    # Half a tick after the workers' ticks (they start a little after us).
    next_row = start + 1.5 * TICK
    go_at: float | None = None
    stop_at: float | None = None
    interrupted = False
    fatal: str | None = None

    def broadcast(message: tuple[str, Any]) -> None:
        for proc in processes:
            if not proc.gone:
                with contextlib.suppress(OSError, ValueError):
                    proc.outbox.send(message)

    try:
        while not all(proc.result is not None or proc.gone for proc in processes):
            try:
                waitables: list[Any] = [p.inbox for p in processes if not p.gone]
                waitables += [p.process.sentinel for p in processes if not p.gone]
                ready = wait(waitables, timeout=max(next_row - time.monotonic(), 0))
                for proc in processes:
                    if proc.gone:
                        continue
                    if proc.inbox in ready:
                        try:
                            kind, payload = proc.inbox.recv()
                        except (EOFError, OSError):
                            proc.gone = True
                            continue
                        if kind == "tick":
                            timeline.add(payload)
                        elif kind == "ready":
                            proc.ready = True
                        elif kind == "result":
                            proc.result = payload
                        elif kind == "fatal":
                            fatal = fatal or payload
                    elif proc.process.sentinel in ready and proc.result is None:
                        proc.process.join(1)
                        proc.gone = True
                        fatal = fatal or (
                            f"load process {processes.index(proc)} exited with code"
                            f" {proc.process.exitcode}"
                        )
                if go_at is None and all(p.ready or p.gone for p in processes):
                    go_at = time.monotonic()
                    stop_at = go_at + _expected_run(config)
                    broadcast(("go", None))
                now = time.monotonic()
                if now >= next_row:
                    next_row += TICK * max(1, int((now - next_row) / TICK) + 1)
                    row = timeline.row(now - start)
                    if progress is not None:
                        phase = (
                            "setup"
                            if go_at is None
                            else "run"
                            if stop_at is None or now < stop_at
                            else "drain"
                        )
                        progress(row, phase)
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                broadcast(("stop", None))
    finally:
        for proc in processes:
            proc.process.join(5)
            if proc.process.is_alive():
                proc.process.terminate()
                proc.process.join(5)
            proc.inbox.close()
            proc.outbox.close()

    if timeline.fresh:
        # The last, partial second (the workers' final ticks).
        row = timeline.row(time.monotonic() - start)
        if progress is not None:
            progress(row, "end")
    network_after = read_counters()
    results = [proc.result for proc in processes if proc.result is not None]
    if not results and fatal is None:
        fatal = "no load process returned a result"
    environment = dict(environment)
    environment["loop"] = results[0].loop if results else None
    environment["parser"] = results[0].parser if results else None
    return merge(
        results,
        scenario=config.scenario,
        target=f"{config.host}:{config.port}",
        config=config.to_json(),
        environment=environment,
        timeline=timeline.rows,
        interrupted=interrupted,
        fatal=fatal,
        network=(
            network_after.since(network_before)
            if network_before is not None and network_after is not None
            else None
        ),
    )


def _expected_run(config: RunConfig) -> float:
    if config.scenario == "login":
        return config.duration
    return config.warmup + config.duration
