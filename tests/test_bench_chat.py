"""
Tests for C{bench/chat.py}'s verdicts: a run whose load generator was
saturated gives no ratio, and chatload's output is read as it is printed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import chat
import chatload


def sample(server: str, round_: int, notifies: float, load_cpu: float) -> Any:
    values = {
        "notifies_per_s": notifies,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "server_cpu_pct": 100.0,
        "load_cpu_pct": load_cpu,
        "other_cpu_pct": 0.0,
        "notifies_per_server_cpu_s": notifies,
    }
    return chat.Sample(round_, server, "K=10 max", values, True, [], load_cpu < 85)


class VerdictTests(SynchronousTestCase):
    def test_ratio_of_valid_rows(self) -> None:
        samples = [
            sample(chat.CHATSVC, 1, 900.0, 40.0),
            sample(chat.PEER, 1, 1000.0, 50.0),
        ]
        [line] = chat.fanout_targets(samples, chat.CHATSVC)
        self.assertIn("0.90x", line)
        self.assertIn("**PASS**", line)

    def test_no_ratio_from_a_saturated_load(self) -> None:
        """
        One round with the load generator at a full core makes the row
        INVALID: no ratio and no verdict, even if the medians would pass.
        """
        samples = [
            sample(chat.CHATSVC, 1, 900.0, 40.0),
            sample(chat.CHATSVC, 2, 900.0, 97.0),
            sample(chat.PEER, 1, 1000.0, 50.0),
            sample(chat.PEER, 2, 1000.0, 50.0),
        ]
        [line] = chat.fanout_targets(samples, chat.CHATSVC)
        self.assertIn("INVALID", line)
        self.assertNotIn("x uvloop-chat", line)
        self.assertNotIn("PASS", line)
        self.assertIn("INVALID", chat.failures(samples, chat.CHATSVC, "K=10 max"))


class ChatloadTests(SynchronousTestCase):
    def test_parse_nan(self) -> None:
        """
        chatload prints C{-nan} where nothing was measured; that reads as 0.
        """
        data = chatload.parse(
            'chatload: connect: refused\n{"notifies_per_s": -nan,'
            ' "latency_ms": {"p50": -1.000, "p99": -1.000},'
            ' "server_cpu": 0.5, "client_cpu": nan, "core_busy_pct": [90, 40],'
            ' "ok": false, "exit_code": 3, "connect_failures": 200}\n'
        )
        values = chatload.values(data)
        self.assertEqual(values["notifies_per_s"], 0.0)
        self.assertEqual(values["p99_ms"], 0.0)
        self.assertEqual(values["server_cpu_pct"], 50.0)
        self.assertEqual(values["other_cpu_pct"], 80.0)
        self.assertEqual(chatload.failures(data), ["connect_failures 200"])

    def test_command(self) -> None:
        fixed = chatload.command(
            Path("cl"), 1, users=100, room_size=100, rate=1000.0, window=1,
            seconds=5, warmup=1, server_pid=7,
        )  # fmt: skip
        self.assertIn("--rate", fixed)
        self.assertNotIn("--window", fixed)
        closed = chatload.command(
            Path("cl"), 1, users=200, room_size=10, rate=0.0, window=4,
            seconds=5, warmup=1, server_pid=7,
        )  # fmt: skip
        self.assertEqual(closed[closed.index("--window") + 1], "4")


class OptionTests(SynchronousTestCase):
    def test_loads_chosen(self) -> None:
        args = chat.parse_args(["--loads", "K=100 fixed, K=10 max"])
        self.assertEqual(
            [load.name for load in chat.fanout_loads(args)], ["K=10 max", "K=100 fixed"]
        )
        every = chat.fanout_loads(chat.parse_args([]))
        self.assertEqual(tuple(load.name for load in every), chat.FANOUT_LOADS)

    def test_unknown_load_refused(self) -> None:
        with self.assertRaises(SystemExit):
            chat.parse_args(["--loads", "K=1000 max"])

    def test_old_chatsvc_on_its_reactor(self) -> None:
        root = Path(__file__).resolve().parent.parent
        for argv, reactor in [
            ([], None),
            (["--old-reactor", "chatsvc-epoll"], "chatsvc-epoll"),
        ]:
            args = chat.parse_args(["--old-chatsvc", str(root), *argv])
            ours, old, peer = chat.servers_of(args)
            self.assertEqual((ours.reactor, old.reactor), ("chatsvc-epoll", reactor))
            self.assertEqual(peer.name, chat.PEER)
