"""
Three hot paths measured in one process, without a load generator:

- **request**: the chat stage's Python per chat request, from the bytes a
  session receives to the notifies its room hands over, with 200 users in
  rooms of 10 each sending 4 chats a turn (test transports: no system calls);
- **fan-out**: a room's notifies handed to 100 loopback connections at the end
  of a turn, per member: ``socket.send`` alone, ``send_to_all`` (what
  ``ChatApplication.broadcast`` does) and a ``Session.send`` per member;
- **receive**: ``chatsvc-bench`` checking chat notifies, per notify, on the
  plain path and with numpy, at 8, 64 and 256 notifies per read.

    python bench/micro.py [--repeat N] [--only request|fanout|receive]

Run it from the repository (it uses the test suite's bot helpers), on an
otherwise idle machine; each figure is the best of N repeats.
"""

from __future__ import annotations

import argparse
import functools
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from chatsvc.content.chat import ChatConfig
from chatsvc.content.login import OpenLogin
from chatsvc.host.applications import ChatApplication
from chatsvc.loadtest.fastpath import NotifyChecker
from chatsvc.net.config import NetConfig
from chatsvc.net.session import SessionFactory
from chatsvc.protocol import PacketId
from chatsvc.protocol.requests import chat_request, enter_room_request, login_request
from tests.test_loadtest import DIRECTORY, bot_in_room, notify

MEMBERS = 100
NOTIFIES = b"x" * 295 * 4  # four chat notifies' worth


def best(repeat: int, once: Callable[[], float]) -> float:
    return min(once() for _ in range(repeat))


def fanout(repeat: int) -> list[str]:
    app = ChatApplication(ChatConfig(chat_rate=0), OpenLogin(), clock=time.monotonic)
    factory = SessionFactory(app, NetConfig(max_connections_per_ip=0), reactor)
    port = reactor.listenTCP(0, factory, backlog=MEMBERS, interface="127.0.0.1")
    clients = []
    for _ in range(MEMBERS):
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
        client.setblocking(False)
        clients.append(client)
    while len(factory.connections) < MEMBERS:
        reactor.iterate(0.01)  # type: ignore[attr-defined]
    sessions = list(app.server.clients)
    sockets = [session.transport.getHandle() for session in sessions]
    pump = factory.pump

    def drain() -> None:
        for client in clients:
            try:
                while client.recv(1 << 20):
                    pass
            except BlockingIOError:
                pass

    def per_member(turn: Callable[[], None], turns: int = 3000) -> float:
        spent = 0.0
        for _ in range(turns // 30):
            started = time.perf_counter()
            for _ in range(30):
                pump.turn += 1
                pump.ending = pump.turn
                turn()
                pump.ending = -1
            spent += time.perf_counter() - started
            drain()
        return spent / turns / MEMBERS

    def raw() -> None:
        for sock in sockets:
            sock.send(NOTIFIES)

    def broadcast() -> None:
        app.broadcast(sessions, NOTIFIES)

    def send_each() -> None:
        for session in sessions:
            session.send(NOTIFIES)

    lines = [f"fan-out of {len(NOTIFIES)} bytes to {MEMBERS} connections, per member:"]
    for label, turn in (
        ("socket.send alone", raw),
        ("send_to_all", broadcast),
        ("send per member", send_each),
    ):
        seconds = best(repeat, lambda turn=turn: per_member(turn))
        lines.append(f"  {label:<18} {seconds * 1e9:6.0f} ns")
    port.stopListening()
    for client in clients:
        client.close()
    return lines


def request(repeat: int) -> list[str]:
    app = ChatApplication(
        ChatConfig(chat_rate=0, rooms=20, room_capacity=10), OpenLogin(), time.monotonic
    )
    factory = SessionFactory(
        app, NetConfig(max_connections_per_ip=0), reactor, known_ids=PacketId
    )
    pump = factory.pump
    users = []
    for i in range(200):
        address = IPv4Address("TCP", "127.0.0.1", 10_000 + i)
        session = factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        session.makeConnection(transport)
        session.dataReceived(login_request(f"u{i}", "pw"))
        users.append((session, transport))
    pump.run_now()
    for i, (session, _) in enumerate(users):
        session.dataReceived(enter_room_request(i // 10))
        pump.run_now()
    chats = chat_request("a chat message of some 32 bytes.") * 4
    turns = 50

    def once() -> float:
        started = time.perf_counter()
        for _ in range(turns):
            for session, _ in users:
                session.dataReceived(chats)
            pump.run_now()
        spent = time.perf_counter() - started
        for _, transport in users:
            transport.clear()
        return spent

    seconds = best(repeat, once)
    assert app.server.stats.chats == (repeat * turns) * 200 * 4
    return [
        f"chat request, K=10, 4 a turn per user: {seconds / turns / 800 * 1e9:5.0f} ns"
    ]


def check(chunks: list[bytes], numpy: bool) -> float:
    """
    CPU seconds one bot takes to receive C{chunks} of notifies.
    """
    checker = NotifyChecker(DIRECTORY, 0, 20) if numpy else None
    bot = bot_in_room(0, members=tuple(range(1, 12)), checker=checker)
    bot.counters.recording = True
    started = time.process_time()
    for chunk in chunks:
        bot.receive(chunk, 10**12)
    spent = time.process_time() - started
    assert bot.counters.received == sum(len(c) for c in chunks) // len(notify(1, 1))
    return spent


def receive(repeat: int) -> list[str]:
    lines = ["chatsvc-bench checking chat notifies (11 senders), per notify:"]
    for per_read in (8, 64, 256):
        reads = 160_000 // per_read
        chunks = []
        seqs = dict.fromkeys(range(1, 12), 0)
        for i in range(reads):
            parts = []
            for k in range(per_read):
                sender = 1 + (i * per_read + k) % 11
                seqs[sender] += 1
                parts.append(notify(sender, seqs[sender], 1, 10**12 - 5000))
            chunks.append(b"".join(parts))
        row = []
        for label, numpy in (("plain", False), ("numpy", True)):
            seconds = best(repeat, functools.partial(check, chunks, numpy))
            row.append(f"{label} {seconds / (reads * per_read) * 1e9:5.0f} ns")
        lines.append(f"  {per_read:>3} per read: " + ", ".join(row))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="repeats (5)")
    paths = {"request": request, "fanout": fanout, "receive": receive}
    parser.add_argument("--only", choices=list(paths), help="measure one path")
    args = parser.parse_args()
    lines = []
    for name, measure in paths.items():
        if args.only in (None, name):
            lines += measure(args.repeat)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
