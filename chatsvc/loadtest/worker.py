# -*- test-case-name: tests.test_loadtest -*-
"""
One load process: its bots on asyncio (uvloop when installed), the phases of
its run, and the messages it exchanges with the parent.

A worker connects its bots and lets them set up (log in, enter), says
C{ready} and waits for C{go}: the parent sends it when every worker is ready,
so the measured phase starts together. Every second it sends a L{Tick}; at
the end its L{WorkerResult}. C{stop} ends the measured phase early.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import socket
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any, Final

from chatsvc.loadtest.accounting import SentLog
from chatsvc.loadtest.bot import Bot, BotState
from chatsvc.loadtest.config import RunConfig
from chatsvc.loadtest.counters import Counters
from chatsvc.loadtest.directory import Directory
from chatsvc.loadtest.fastpath import NotifyChecker, available
from chatsvc.loadtest.link import Link, Phase
from chatsvc.loadtest.procinfo import machine_busy_seconds, process_cpu_seconds
from chatsvc.loadtest.scenarios import SCENARIO_BOTS, BotFailedError
from chatsvc.loadtest.stats import (
    Tick,
    TrackerReport,
    WorkerResult,
    drain_counts,
    encode,
    new_histogram,
)

TICK: Final = 1.0
"""Seconds between two progress reports to the parent."""
QUIET: Final = 0.25
"""Seconds without a new notify after which a drained run is over."""


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
        self.phase = Phase(self.loop, config.timeout)
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
        checker = None
        if config.fast_path and config.scenario in ("chat", "churn") and available():
            checker = NotifyChecker(self.directory, config.user_start, config.users)
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
                checker=checker,
            )
            for index in indices
        ]

    # --- what the scenarios use (chatsvc.loadtest.scenarios.Driver) ---------------

    @property
    def stopping(self) -> bool:
        return self.phase.stopping

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
                        lambda: Link(bot, self.phase, counters, self.violated),
                        *config.address(bot.index),
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
            self.phase.drain_deadline = self.loop.time() + self.config.drain
            self.phase.stopping = True
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
        remaining = self.phase.drain_deadline - self.loop.time()
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
            if self.loop.time() + QUIET > self.phase.drain_deadline:
                break
            await asyncio.sleep(QUIET)

    async def _finish(self) -> None:
        self.phase.finishing = True
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
