"""
The CPU a process spends each time a socket wakes it, by event loop.

    python bench/wakeup.py [--rate 400] [--seconds 5] [--rounds 3]

A child process sends one byte on a loopback TCP connection ``--rate``
times a second; the measured process waits for it, reads it and waits
again, in each of:

- ``epoll``: a bare Python loop over ``select.epoll`` (the floor for Python);
- ``uvloop``: asyncio on uvloop (libuv in C), a reader callback (the loop of
  bench/chat.py's peer), where it is installed (``pip install '.[bench]'``);
- ``twisted``: Twisted's epoll reactor and a protocol on the adopted
  connection (a TCP transport as a server's);
- ``chatsvc-epoll``: the same on chatsvc's reactor (``chatsvc.net.reactor``).

Each runs with the sender on the same core and on the other one, every case
once per round (a process of its own each time). Reported: wake-ups, and
the measured process's CPU (user + system, from ``time.process_time``) per
wake-up, the median over the rounds (a wake-up's cost moves by half between
runs on a shared virtual machine). At a moderate load every chat is a
wake-up of its own on every process it touches, so this is the fixed cost
the cluster benchmark's "wakes/chat" multiplies. Linux only (``epoll``, CPU affinity).
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import subprocess
import sys
import time
from importlib.util import find_spec

LOOPS = ("epoll", "uvloop", "twisted", "chatsvc-epoll")


def send(sock: socket.socket, rate: float, seconds: float) -> None:
    interval = 1 / rate
    due = time.monotonic()
    end = due + seconds
    while due < end:
        sock.send(b"x")
        due += interval
        time.sleep(max(0.0, due - time.monotonic()))


def bare_loop(sock: socket.socket, seconds: float) -> tuple[int, float]:
    poller = select.epoll()
    poller.register(sock.fileno(), select.EPOLLIN)
    wakes = 0
    cpu = time.process_time()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _fd, _event in poller.poll(0.1):
            sock.recv(65536)
            wakes += 1
    return wakes, time.process_time() - cpu


def uvloop_loop(sock: socket.socket, seconds: float) -> tuple[int, float]:
    import asyncio

    import uvloop

    wakes = 0

    def read() -> None:
        nonlocal wakes
        sock.recv(65536)
        wakes += 1

    async def run() -> float:
        nonlocal wakes
        loop = asyncio.get_running_loop()
        loop.add_reader(sock.fileno(), read)
        wakes, cpu = 0, time.process_time()
        await asyncio.sleep(seconds)
        return time.process_time() - cpu

    cpu = uvloop.run(run())
    return wakes, cpu


def reactor_loop(sock: socket.socket, seconds: float, loop: str) -> tuple[int, float]:
    if loop == "chatsvc-epoll":
        from chatsvc.net import reactor as chatsvc_reactor

        chatsvc_reactor.install()
    else:
        from twisted.internet import epollreactor

        epollreactor.install()
    from twisted.internet import reactor
    from twisted.internet.interfaces import IReactorSocket
    from twisted.internet.protocol import Protocol, ServerFactory

    wakes = 0
    cpu = 0.0

    class Reader(Protocol):
        def dataReceived(self, data: bytes) -> None:
            nonlocal wakes
            wakes += 1

    def start() -> None:
        nonlocal wakes, cpu
        wakes, cpu = 0, time.process_time()
        reactor.callLater(seconds, stop)

    def stop() -> None:
        nonlocal cpu
        cpu = time.process_time() - cpu
        reactor.stop()

    factory = ServerFactory()
    factory.protocol = Reader
    IReactorSocket(reactor).adoptStreamConnection(
        sock.fileno(), socket.AF_INET, factory
    )
    reactor.callWhenRunning(start)
    reactor.run()
    return wakes, cpu


def measure(loop: str, sender_core: int, rate: float, seconds: float) -> str:
    """
    Run one loop in this process (pinned to core 0) against a sender on
    C{sender_core}; return its wake-ups and CPU seconds.
    """
    os.sched_setaffinity(0, {0})
    listening = socket.create_server(("127.0.0.1", 0))
    pid = os.fork()
    if pid == 0:
        os.sched_setaffinity(0, {sender_core})
        try:
            sender = socket.create_connection(listening.getsockname())
            sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            send(sender, rate, seconds + 1)
        finally:
            os._exit(0)
    mine, _ = listening.accept()
    listening.close()
    mine.setblocking(False)
    time.sleep(0.5)
    if loop == "epoll":
        wakes, cpu = bare_loop(mine, seconds)
    elif loop == "uvloop":
        wakes, cpu = uvloop_loop(mine, seconds)
    else:
        wakes, cpu = reactor_loop(mine, seconds, loop)
    mine.close()
    os.waitpid(pid, 0)
    return f"{wakes} {cpu}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=400.0, help="bytes a second")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured s")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (median)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--sender-core", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(measure(args.one, args.sender_core, args.rate, args.seconds))
        return 0
    if len(os.sched_getaffinity(0)) < 2:
        parser.error("needs two cores")
    loops = [loop for loop in LOOPS if loop != "uvloop" or find_spec("uvloop")]
    cases = [(loop, core) for loop in loops for core in (0, 1)]
    runs: dict[tuple[str, int], list[tuple[int, float]]] = {c: [] for c in cases}
    for _ in range(args.rounds):
        for loop, core in cases:
            # A reactor is installed once per process: each run gets its own.
            command = [
                sys.executable, __file__, "--one", loop, "--sender-core", str(core),
                "--rate", str(args.rate), "--seconds", str(args.seconds),
            ]  # fmt: skip
            out = subprocess.run(command, check=True, capture_output=True, text=True)
            counted, used = out.stdout.split()
            runs[loop, core].append((int(counted), float(used)))
    print(f"{'loop':<14}{'sender':<12}{'wake-ups':>8}{'CPU µs/wake-up':>16}")
    for (loop, core), results in runs.items():
        where = "same core" if core == 0 else "other core"
        median_wakes = statistics.median(w for w, _ in results)
        per_wake = statistics.median(cpu / max(w, 1) for w, cpu in results)
        print(f"{loop:<14}{where:<12}{median_wakes:>8,.0f}{per_wake * 1e6:>16.1f}")
    if "uvloop" not in loops:
        print("uvloop        not installed (pip install '.[bench]')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
