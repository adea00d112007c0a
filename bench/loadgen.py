"""
The load generator of ``bench/echo.py``: one process, many connections.

Every connection keeps ``--depth`` DEV_ECHO packets of ``--size`` bytes in
flight (1: ping-pong; more: pipelined). Replies are counted by parsing the
length field of each packet header in a receive buffer, never by copying
packets out, and for every reply the connection sends one new packet, so the
number in flight stays constant. Packets are encoded once, up front, and so is
every burst of 1..depth of them.

Per-message latency is the time from a packet's send to the arrival of its
reply, matched first in first out per connection. Packets written together
share one timestamp, so the FIFO holds runs (time sent, count) and a whole
run is matched at once. Latencies go into a log-scale histogram (about 1 %
wide buckets) that several load processes can merge.

The process runs on uvloop when it is installed (``--loop asyncio`` forces the
standard loop), connects everything, starts the traffic, lets it warm up, then
measures for ``--seconds``: replies, its own CPU time (``getrusage``) and,
given ``--server-pid``, the server's CPU time from ``/proc``, and the user and
system time of the whole machine (to tell how much else was running). It
prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import struct
import sys
import time
from collections import Counter, deque
from typing import Any, Final

from chatsvc.loadtest.procinfo import machine_busy_seconds, process_cpu_seconds

HEADER: Final = struct.Struct("<HHB")
HEADER_SIZE: Final = HEADER.size
LENGTH_AND_ID: Final = struct.Struct("<HH")
DEV_ECHO: Final = 1
BUCKETS_PER_E: Final = 100
"""Histogram buckets per factor of e: each bucket is about 1 % wide."""


def encode_echo(size: int) -> bytes:
    """
    Return one DEV_ECHO packet of C{size} bytes in total, header included.
    """
    if not HEADER_SIZE <= size <= 0xFFFF:
        raise ValueError(f"packet size {size} outside {HEADER_SIZE}..65535")
    body = bytes(i & 0xFF for i in range(size - HEADER_SIZE))
    return HEADER.pack(size, DEV_ECHO, 0) + body


def latency_bucket(seconds: float) -> int:
    """
    Return the histogram bucket of a latency.
    """
    return int(math.log(max(seconds * 1e9, 1.0)) * BUCKETS_PER_E)


def bucket_seconds(bucket: int) -> float:
    """
    Return the latency a histogram bucket stands for (its geometric middle).
    """
    return math.exp((bucket + 0.5) / BUCKETS_PER_E) / 1e9


class Stats:
    """
    Counters shared by all connections of this process.
    """

    __slots__ = ("errors", "histogram", "recording", "replies")

    def __init__(self) -> None:
        self.replies = 0
        self.errors: list[str] = []
        self.histogram: Counter[int] = Counter()
        self.recording = False


class Run:
    """
    Packets written together: when, and how many not yet answered.
    """

    __slots__ = ("count", "sent_at")

    def __init__(self, sent_at: float, count: int) -> None:
        self.sent_at = sent_at
        self.count = count


class EchoClient(asyncio.Protocol):
    """
    One connection keeping C{depth} packets in flight.
    """

    def __init__(self, stats: Stats, packet: bytes, depth: int) -> None:
        self._stats = stats
        self._size = len(packet)
        self._depth = depth
        self._bursts = [packet * count for count in range(depth + 1)]
        self._buffer = bytearray()
        self._sent: deque[Run] = deque()
        self._transport: asyncio.Transport | None = None
        self.stopping = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def start(self) -> None:
        """
        Put the first C{depth} packets in flight.
        """
        if not self.closed:
            self._send(time.perf_counter(), self._depth)

    def stop(self) -> None:
        """
        Drop the connection.
        """
        self.stopping = True
        if self._transport is not None:
            self._transport.abort()

    def _send(self, now: float, count: int) -> None:
        self._sent.append(Run(now, count))
        self._transport.write(self._bursts[count])  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        replies = self._count_replies(buffer)
        if replies:
            now = time.perf_counter()
            self._stats.replies += replies
            self._match(now, replies)
            self._send(now, replies)

    def _count_replies(self, buffer: bytearray) -> int:
        """
        Consume the complete packets at the start of C{buffer}; return how many.
        """
        size = self._size
        end = len(buffer)
        offset = 0
        replies = 0
        unpack_from = LENGTH_AND_ID.unpack_from
        while end - offset >= 4:
            length, packet_id = unpack_from(buffer, offset)
            if length != size or packet_id != DEV_ECHO:
                self._fail(f"unexpected reply: length {length}, id {packet_id}")
                return 0
            if end - offset < length:
                break
            offset += length
            replies += 1
        if offset:
            del buffer[:offset]
        if replies > self._depth:
            self._fail(f"{replies} replies with only {self._depth} packets in flight")
            return 0
        return replies

    def _match(self, now: float, replies: int) -> None:
        """
        Match C{replies} replies to the oldest sends, recording their latency.
        """
        sent = self._sent
        histogram = self._stats.histogram if self._stats.recording else None
        while replies:
            run = sent[0]
            taken = min(run.count, replies)
            if histogram is not None:
                histogram[latency_bucket(now - run.sent_at)] += taken
            if taken == run.count:
                sent.popleft()
            else:
                run.count -= taken
            replies -= taken

    def _fail(self, reason: str) -> None:
        self._stats.errors.append(reason)
        self.stop()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.stopping:
            self._stats.errors.append(f"connection lost: {exc}")


def cpu_seconds() -> float:
    """
    Return the CPU time (user + system) this process has used.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def snapshot(stats: Stats, server_pid: int | None) -> dict[str, float]:
    """
    Return the counters a measurement window is the difference of.
    """
    return {
        "wall": time.perf_counter(),
        "replies": stats.replies,
        "cpu": cpu_seconds(),
        "server_cpu": process_cpu_seconds(server_pid) if server_pid else 0.0,
        "machine_busy": machine_busy_seconds(),
    }


async def connect_all(
    args: argparse.Namespace, stats: Stats, packet: bytes
) -> list[EchoClient]:
    """
    Open every connection, one at a time (a listen backlog is not a benchmark).
    """
    loop = asyncio.get_running_loop()
    clients = []
    for _ in range(args.connections):
        _, client = await loop.create_connection(
            lambda: EchoClient(stats, packet, args.depth), args.host, args.port
        )
        clients.append(client)
    return clients


async def wait_for_window(args: argparse.Namespace) -> None:
    """
    Warm up, then wait for the agreed start of the window, if any.
    """
    await asyncio.sleep(args.warmup)
    if args.start_at:
        await asyncio.sleep(max(0.0, args.start_at - time.time()))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """
    Run the load and return the measurement.
    """
    stats = Stats()
    try:
        clients = await connect_all(args, stats, encode_echo(args.size))
    except OSError as e:
        stats.errors.append(f"connect to {args.host}:{args.port} failed: {e}")
        clients = []
    for client in clients:
        client.start()
    await wait_for_window(args)
    before = snapshot(stats, args.server_pid)
    stats.recording = True
    await asyncio.sleep(args.seconds)
    stats.recording = False
    after = snapshot(stats, args.server_pid)
    for client in clients:
        client.stop()
    wall = after["wall"] - before["wall"]
    return {
        "connections": args.connections,
        "depth": args.depth,
        "size": args.size,
        "seconds": wall,
        "replies": after["replies"] - before["replies"],
        "cpu_seconds": after["cpu"] - before["cpu"],
        "server_cpu_seconds": after["server_cpu"] - before["server_cpu"],
        "machine_busy_seconds": after["machine_busy"] - before["machine_busy"],
        "histogram": {str(bucket): n for bucket, n in sorted(stats.histogram.items())},
        "errors": stats.errors[:10],
        "error_count": len(stats.errors),
    }


def new_loop(kind: str) -> tuple[asyncio.AbstractEventLoop, str]:
    """
    Return a new event loop of the wanted kind and the name of the one made.
    """
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop(), "uvloop"
    return asyncio.new_event_loop(), "asyncio"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--depth", type=int, default=1, help="packets in flight")
    parser.add_argument("--size", type=int, default=32, help="bytes per packet")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--start-at",
        type=float,
        default=0.0,
        help="time.time() at which to start measuring, at the earliest",
    )
    parser.add_argument("--server-pid", type=int, default=0)
    parser.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default="auto")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.depth < 1:
        parser.error("--connections and --depth must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    loop, loop_name = new_loop(args.loop)
    try:
        result = loop.run_until_complete(run(args))
    finally:
        loop.close()
    result["loop"] = loop_name
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 1 if result["error_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
