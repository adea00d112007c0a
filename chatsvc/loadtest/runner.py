# -*- test-case-name: tests.test_loadtest -*-
"""
The parent of a load test: it starts C{--procs} load processes (C{fork} where
there is one, else C{spawn}), each running a L{chatsvc.loadtest.worker} with
its share of the bots (L{share_bots}) over two one-way pipes, keeps them in
step (C{go} once every one is ready, C{stop} on Ctrl-C), shows their progress
once a second and adds up their results.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from chatsvc.loadtest.config import RunConfig, share_bots
from chatsvc.loadtest.network import read_counters
from chatsvc.loadtest.stats import Summary, TimelineBuilder, WorkerResult, merge
from chatsvc.loadtest.worker import TICK, worker_main


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
        target=",".join(config.connect) or f"{config.host}:{config.port}",
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
