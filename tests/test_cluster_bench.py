"""
chatsvc-bench against a cluster: C{--connect} spreads each room's bots over
the nodes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatsvc.cluster.config import ClusterConfig
from chatsvc.content.chat import ChatConfig
from chatsvc.host.redis_login import RedisURL
from chatsvc.host.services import chat_service
from chatsvc.loadtest.cli import parse_args
from chatsvc.loadtest.config import RunConfig
from chatsvc.net.config import NetConfig
from tests.support import reactor, start_redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import cluster


def row(mode: str, per_cpu_s: float) -> dict[str, object]:
    return {
        "mode": mode,
        "k": 100,
        "ok": True,
        "valid": True,
        "notifies_per_s": 2000.0,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "chatsvc_cpu_s": 2000.0 / per_cpu_s if per_cpu_s else 0.0,
        "redis_cpu_s": 0.0,
        "notifies_per_chatsvc_cpu_s": per_cpu_s,
        "notifies_per_cpu_s_with_redis": per_cpu_s,
        "load_cpu_pct": 10.0,
        "wakes_per_chat": 0.9 if mode == "single" else 2.2,
    }


class ReportTests(SynchronousTestCase):
    def test_ratio(self) -> None:
        text = cluster.report([row("single", 100_000.0), row("cluster", 75_000.0)])
        self.assertIn("notifies per chatsvc CPU-second 0.75 (target >= 0.7)", text)
        single, clustered = text.splitlines()[1:3]
        self.assertEqual((single.split()[9], clustered.split()[9]), ("0.90", "2.20"))

    def test_no_cpu_measured(self) -> None:
        """
        A run too short to measure any CPU gives no ratio, and says why.
        """
        text = cluster.report([row("single", 0.0), row("cluster", 75_000.0)])
        self.assertIn("n/a (no chatsvc CPU measured in a run; run longer)", text)


class AddressTests(SynchronousTestCase):
    def test_each_room_spread_over_the_nodes(self) -> None:
        config = RunConfig("chat", users=12, rooms=3, connect=("a:1", "b:2"))
        for room in range(3):
            nodes = [
                config.address(i)[0] for i in range(12) if config.room_of(i) == room
            ]
            self.assertEqual(nodes, ["a", "b", "a", "b"])

    def test_one_server(self) -> None:
        config = RunConfig("chat", host="h", port=5)
        self.assertEqual(config.address(7), ("h", 5))

    def test_connect_option(self) -> None:
        _, config = parse_args(["chat", "--connect", "127.0.0.1:1,[::1]:2"])
        self.assertEqual(config.connect, ("127.0.0.1:1", "[::1]:2"))
        self.assertEqual(config.address(10), ("::1", 2))
        with self.assertRaises(SystemExit):
            parse_args(["chat", "--connect", "127.0.0.1"])


class ClusterBenchTests(TestCase):
    timeout = 90

    async def test_chat_over_two_nodes(self) -> None:
        redis = start_redis(self)
        ports = []
        for node in ("n1", "n2"):
            service = chat_service(
                "tcp:0:interface=127.0.0.1",
                NetConfig(),
                ChatConfig(chat_rate=0, rooms=10, room_capacity=10),
                reactor=reactor,
                cluster=ClusterConfig(RedisURL.parse(redis.url), node),
            )
            service.startService()
            self.addCleanup(service.stopService)
            ports.append((await service.listener.listening).getHost().port)
        out = Path(tempfile.mkdtemp(prefix="chatsvc-bench-test-")) / "result.json"
        connect = ",".join(f"127.0.0.1:{port}" for port in ports)
        args = [
            "-m", "chatsvc.loadtest.cli", "chat", "--connect", connect,
            "--users", "20", "--rooms", "5", "--rate", "10", "--duration", "2",
            "-q", "--json", str(out),
        ]  # fmt: skip
        stdout, stderr, code = await getProcessOutputAndValue(
            sys.executable, args, env=os.environ, reactor=reactor
        )
        self.assertEqual(code, 0, (stdout + stderr).decode())
        data = json.loads(out.read_text())
        self.assertEqual(
            {k: data["correctness"][k] for k in ("lost", "duplicated", "reordered")},
            {"lost": 0, "duplicated": 0, "reordered": 0},
        )
        counts = data["counts"]
        self.assertGreater(counts["sent"], 0)
        self.assertEqual(counts["received"], 4 * counts["sent"])

    async def test_benchmark_runs_end_to_end(self) -> None:
        """
        C{bench/cluster.py} starts a node alone and a two-node cluster with
        its own redis-server, and measures both: a short run completes clean.
        """
        out = Path(tempfile.mkdtemp(prefix="chatsvc-cluster-bench-")) / "r.json"
        script = Path(__file__).resolve().parent.parent / "bench" / "cluster.py"
        args = [
            str(script), "--seconds", "1", "--rounds", "1", "--k", "100",
            "--notifies", "2000", "--no-pin", "--json", str(out),
        ]  # fmt: skip
        stdout, stderr, code = await getProcessOutputAndValue(
            sys.executable, args, env=os.environ, reactor=reactor
        )
        self.assertEqual(code, 0, (stdout + stderr).decode())
        runs = json.loads(out.read_text())["runs"]
        self.assertEqual(sorted(run["mode"] for run in runs), ["cluster", "single"])
        self.assertTrue(all(run["ok"] and run["lost"] == 0 for run in runs))
        self.assertTrue(all(run["wakes_per_chat"] > 0 for run in runs))
