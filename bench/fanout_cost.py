"""
What chatsvc's chat stage costs per notify, counted where a shared machine's
wall clock cannot be trusted: the server and a scripted load run in one
process, on the real reactor and real loopback TCP connections, and every
turn is the same: each of U users sends W chats in one write, and the reactor
turns until every member has every notify. Under callgrind (``--callgrind``)
the count of instructions is exact and repeatable; without it the process's
CPU time per notify is printed.

    python bench/fanout_cost.py --room-size 10 --users 200 --window 4 --turns 20
    python bench/fanout_cost.py --callgrind ...        # instructions per notify
    python bench/fanout_cost.py --tree /path/to/other/checkout --callgrind ...
    python bench/fanout_cost.py --reactor chatsvc-epoll --callgrind ...

With ``--callgrind`` it runs itself twice under ``valgrind --tool=callgrind``,
with ``--turns`` turns and with none, and divides the difference by the
notifies: the set-up (imports, logins) cancels out. The count includes the
scripted load's own work (a ``send`` per user and a ``recv`` per user and
reactor turn, no per-notify Python), which is the same for every server
given the same number of writes: compare servers by their difference.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _packet(packet_id: int, body: bytes) -> bytes:
    return struct.pack("<HHB", 5 + len(body), packet_id, 0) + body


def user_list_size(names: list[bytes]) -> int:
    """
    Bytes of the ROOM_USER_LIST_NTF packets for C{names}: 1,024 bytes and 127
    users at most each, one packet with a count of 0 for none.
    """
    sizes = [6]
    count = 0
    for name in names:
        entry = 9 + len(name)
        if count and (sizes[-1] + entry > 1024 or count == 127):
            sizes.append(6)
            count = 0
        sizes[-1] += entry
        count += 1
    return sum(sizes)


class Load:
    """
    U non-blocking client sockets and what each is owed.
    """

    def __init__(self, port: int, users: int, room_size: int, window: int) -> None:
        self.users = users
        self.room_size = room_size
        self.window = window
        self.sockets = []
        for _ in range(users):
            client = socket.create_connection(("127.0.0.1", port))
            client.setblocking(False)
            self.sockets.append(client)
        self.owed = [0] * users
        self.buffer = bytearray(1 << 20)
        chat = _packet(221, b"x" * 32 + b"\0" * 225)
        self.chats = chat * window
        self.per_turn = window * 7 + window * room_size * 295

    def send_all(self, requests: list[bytes], owed: list[int]) -> None:
        for client, request, size, index in zip(
            self.sockets, requests, owed, range(self.users), strict=True
        ):
            client.sendall(request)
            self.owed[index] += size

    def receive(self) -> bool:
        """
        Read what has arrived; return whether nothing more is owed.
        """
        done = True
        for index, client in enumerate(self.sockets):
            if self.owed[index]:
                with contextlib.suppress(BlockingIOError):
                    self.owed[index] -= client.recv_into(self.buffer)
                done = done and not self.owed[index]
        return done


def run(args: argparse.Namespace) -> tuple[int, float]:
    """
    Start the chat stage, log everybody in and into rooms, run the turns;
    return the notifies delivered and the process CPU seconds they took.
    """
    # chatsvc and its twistd plugins (the reactor) from the checkout's root
    root = Path(args.tree) if args.tree else Path(__file__).parent.parent
    sys.path.insert(0, str(root.resolve()))
    if args.reactor:
        from twisted.application.reactors import installReactor

        installReactor(args.reactor)
    from twisted.internet import reactor

    from chatsvc.host.options import ChatOptions
    from chatsvc.host.services import make_chat_service

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = ChatOptions()
    options.parseOptions(
        [
            "--listen", f"tcp:{port}:interface=127.0.0.1:backlog=1024",
            "--chat-rate", "0", "--rooms", "100", "--room-capacity", "100",
            "--max-users", str(args.users + 10), "--log-level", "warn",
            "--max-connections-per-ip", "0",
        ]
    )  # fmt: skip
    service = make_chat_service(options)
    service.startService()
    for _ in range(100):
        reactor.iterate(0.01)
    load = Load(port, args.users, args.room_size, args.window)

    def settle() -> None:
        deadline = time.monotonic() + 60
        while not load.receive():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server owes {sum(load.owed)} bytes")
            reactor.iterate(0.01)

    names = [f"u{i}".encode() for i in range(args.users)]
    load.send_all(
        [_packet(201, n.ljust(33, b"\0") + b"pw".ljust(33, b"\0")) for n in names],
        [7] * args.users,
    )
    settle()
    # Enter one user of each room at a time, so that each gets the user list
    # of those before it and they the new-user notify: all owed exactly.
    for seat in range(args.room_size):
        for index in range(args.users):
            first = index - index % args.room_size
            if index % args.room_size == seat:
                enter = _packet(206, struct.pack("<i", index // args.room_size))
                load.sockets[index].sendall(enter)
                load.owed[index] += 7 + user_list_size(names[first:index])
            elif index % args.room_size < seat:
                load.owed[index] += 14 + len(names[first + seat])
        settle()
    started = time.process_time()
    for _ in range(args.turns):
        load.send_all([load.chats] * args.users, [load.per_turn] * args.users)
        settle()
    cpu = time.process_time() - started
    return args.turns * args.users * args.window * args.room_size, cpu


def callgrind(argv: list[str], turns: int) -> int:
    """
    Run this script under callgrind with C{turns}; return its instructions.
    """
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        subprocess.run(
            [*valgrind, sys.executable, __file__, *argv, "--turns", str(turns)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
        if match is None:
            raise RuntimeError("callgrind wrote no totals")
        return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--room-size", type=int, default=10, help="K (10)")
    parser.add_argument("--users", type=int, default=200, help="U (200)")
    parser.add_argument("--window", type=int, default=4, help="W chats a turn (4)")
    parser.add_argument("--turns", type=int, default=20, help="turns measured (20)")
    parser.add_argument("--tree", help="import chatsvc from this checkout")
    parser.add_argument(
        "--reactor", help="twistd's name of the reactor (default: Twisted's default)"
    )
    parser.add_argument(
        "--callgrind", action="store_true", help="count instructions (valgrind)"
    )
    args = parser.parse_args(argv)
    if args.users % args.room_size:
        parser.error("--users must be a multiple of --room-size")
    if args.callgrind:
        rest = [a for a in (argv or sys.argv[1:]) if a != "--callgrind"]
        rest += ["--room-size", str(args.room_size), "--users", str(args.users)]
        rest += ["--window", str(args.window)]
        total = callgrind(rest, args.turns) - callgrind(rest, 0)
        notifies = args.turns * args.users * args.window * args.room_size
        print(
            f"{total / notifies:,.0f} instructions per notify"
            f" ({total:,} over {notifies:,} notifies; K={args.room_size},"
            f" U={args.users}, W={args.window}, {args.turns} turns)"
        )
        return 0
    notifies, cpu = run(args)
    if notifies:
        print(
            f"{1e9 * cpu / notifies:,.0f} ns of process CPU per notify"
            f" ({notifies:,} notifies in {cpu:.2f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
