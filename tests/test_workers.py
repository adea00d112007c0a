"""
C{--workers}: the options, the supervisor's plan and its handling of worker
processes (spawned on a fake reactor here; C{tests.test_workers_processes}
runs real ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

from twisted.internet.address import IPv4Address
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.host import workers
from chatsvc.host.options import ChatOptions
from chatsvc.host.workers import (
    LISTEN_FD,
    WorkerPlan,
    WorkerSupervisor,
    cores,
    refusal,
    shift_port,
    worker_count,
    worker_log_file,
)

CLUSTER = "redis://127.0.0.1:6379/0"


class FakePort:
    def __init__(self, port: int) -> None:
        self.address = IPv4Address("TCP", "127.0.0.1", port)
        self.reading = True
        self.listening = True

    def getHost(self) -> IPv4Address:
        return self.address

    def stopReading(self) -> None:
        self.reading = False

    def stopListening(self) -> None:
        self.listening = False

    def fileno(self) -> int:
        return 42


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []
        self.ended = False

    def signalProcess(self, name: str) -> None:
        if self.ended:
            raise ProcessExitedAlready()
        self.signals.append(name)


class ProcessReactor(MemoryReactorClock):
    """
    A memory reactor that records the processes it is asked to spawn.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, list[str], dict[int, Any], FakeProcess]] = []
        self.ports: list[FakePort] = []

    def listenTCP(
        self, port: int, factory: Any, backlog: int = 50, interface: str = ""
    ) -> Any:  # type: ignore[override]
        fake = FakePort(port or 40000)
        self.ports.append(fake)
        return fake

    def spawnProcess(  # type: ignore[override]
        self,
        protocol: Any,
        executable: str,
        args: list[str],
        env: dict[str, str],
        childFDs: dict[int, Any],
    ) -> FakeProcess:
        process = FakeProcess(1000 + len(self.spawned))
        protocol.makeConnection(process)
        self.spawned.append((protocol, args, childFDs, process))
        return process

    def end(self, index: int, reason: Exception) -> None:
        protocol, _, _, process = self.spawned[index]
        process.ended = True
        protocol.processEnded(Failure(reason))


def parse(args: list[str]) -> ChatOptions:
    options = ChatOptions()
    options.parseOptions(args)
    return options


class CountTests(SynchronousTestCase):
    def test_auto_and_zero_mean_one_per_core(self) -> None:
        self.assertEqual(worker_count("auto"), cores())
        self.assertEqual(worker_count("0"), cores())
        self.assertEqual(worker_count("3"), 3)
        self.assertRaises(ValueError, worker_count, "-1")
        self.assertRaises(ValueError, worker_count, "many")


class ShiftPortTests(SynchronousTestCase):
    def test_positional_port(self) -> None:
        self.assertEqual(
            shift_port("tcp:9100:interface=127.0.0.1", 2),
            "tcp:9102:interface=127.0.0.1",
        )

    def test_keyword_port_and_escapes(self) -> None:
        self.assertEqual(
            shift_port("tcp6:interface=\\:\\:1:port=9100", 1),
            "tcp6:interface=\\:\\:1:port=9101",
        )

    def test_port_zero_stays_any_port(self) -> None:
        self.assertEqual(shift_port("tcp:0", 5), "tcp:0")

    def test_not_tcp(self) -> None:
        for endpoint in ("unix:/tmp/metrics", "tcp", "tcp:http"):
            self.assertRaises(ValueError, shift_port, endpoint, 1)

    def test_log_file(self) -> None:
        self.assertEqual(
            worker_log_file("/var/log/chatsvc/chatsvc.log", 2),
            str(Path("/var/log/chatsvc/chatsvc-w2.log")),
        )


class OptionsTests(SynchronousTestCase):
    def error(self, args: list[str]) -> str:
        with self.assertRaises(usage.UsageError) as raised:
            parse(args)
        return str(raised.exception)

    def test_without_workers_nothing_changes(self) -> None:
        self.assertIsNone(parse(["--cluster", CLUSTER]).workers)

    def test_plan(self) -> None:
        options = parse(
            [
                "--workers=auto",
                "--cluster",
                CLUSTER,
                "--node-id",
                "chat",
                "--rooms",
                "7",
                "--metrics",
                "tcp:9100",
                "--disconnect-unknown",
            ]
        )
        plan = options.workers
        assert plan is not None
        self.assertEqual(plan.count, cores())
        self.assertEqual(plan.node_id, "chat")
        self.assertEqual(
            sorted(plan.args),
            sorted([f"--cluster={CLUSTER}", "--rooms=7", "--disconnect-unknown"]),
        )
        self.assertEqual(
            plan.worker_args(2, 0)[-3:],
            [f"--listen-fd={LISTEN_FD}", "--node-id=chat-w2", "--metrics=tcp:9101"],
        )
        self.assertIn("--node-id=chat-w2-3", plan.worker_args(2, 3))

    def test_file_values_stay_in_the_file(self) -> None:
        """
        What the configuration file says reaches the workers through the
        file, not their command lines (where passwords would show).
        """
        path = self.mktemp()
        Path(path).write_text(
            f'cluster = "{CLUSTER.replace("//", "//user:secret@")}"\nrooms = 3\n'
        )
        plan = parse(["--config", path, "--workers", "2", "--rooms", "5"]).workers
        assert plan is not None
        self.assertEqual(list(plan.args), [f"--config={path}", "--rooms=5"])

    def test_count_in_the_file(self) -> None:
        for value, count in (('"auto"', cores()), ("3", 3)):
            path = self.mktemp()
            Path(path).write_text(f'workers = {value}\ncluster = "{CLUSTER}"\n')
            plan = parse(["--config", path]).workers
            assert plan is not None
            self.assertEqual(plan.count, count)

    def test_needs_a_cluster(self) -> None:
        self.assertIn("--cluster", self.error(["--workers", "2"]))

    def test_shares_stream_sockets_only(self) -> None:
        self.assertEqual(
            self.error(
                ["--workers", "2", "--cluster", CLUSTER, "--listen", "ssl:11021"]
            ),
            "--workers shares tcp:, tcp6: and unix: listeners, not ssl:",
        )

    def test_web_is_one_process(self) -> None:
        message = self.error(
            ["--workers", "2", "--cluster", CLUSTER, "--web", "tcp:8080"]
        )
        self.assertIn("--web is served by one process", message)

    def test_metrics_need_a_tcp_port(self) -> None:
        message = self.error(
            ["--workers", "2", "--cluster", CLUSTER, "--metrics", "unix:/tmp/m"]
        )
        self.assertIn("--metrics with --workers", message)

    def test_refused_where_sockets_cannot_be_shared(self) -> None:
        """
        A reactor without adoptStreamPort (IOCP) refuses --workers with one
        line saying how to run the nodes on separate ports.
        """
        with mock.patch("chatsvc.host.options.default_reactor", object):
            message = self.error(["--workers", "2", "--cluster", CLUSTER])
        self.assertNotIn("\n", message)
        self.assertIn("adoptStreamPort", message)
        self.assertIn("--listen tcp:PORT", message)
        self.assertEqual(message, refusal(object()))

    def test_listen_fd_must_be_a_socket(self) -> None:
        path = self.mktemp()
        Path(path).write_text("")
        with open(path) as f:
            self.assertIn("not a socket", self.error(["--listen-fd", str(f.fileno())]))


class SupervisorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = ProcessReactor()
        plan = WorkerPlan(
            count=2, args=["--cluster=x"], node_id="chat", stop_timeout=20
        )
        self.supervisor = WorkerSupervisor(
            "tcp:11021", plan, self.reactor, twistd=["python", "twistd"]
        )
        self.supervisor.startService()

    def test_spawns_workers_on_the_shared_socket(self) -> None:
        [port] = self.reactor.ports
        self.assertFalse(port.reading)
        self.assertEqual(len(self.reactor.spawned), 2)
        for index, (_, args, fds, _) in enumerate(self.reactor.spawned, 1):
            self.assertEqual(fds[LISTEN_FD], 42)
            self.assertEqual(
                args,
                [
                    "python",
                    "twistd",
                    "chatsvc",
                    "--cluster=x",
                    "--listen-fd=3",
                    f"--node-id=chat-w{index}",
                ],
            )

    def test_dead_worker_is_replaced_with_a_new_node_id(self) -> None:
        self.reactor.advance(60)
        self.reactor.end(0, ProcessTerminated(signal=9))
        self.assertNotIn(1, self.supervisor.workers)
        self.reactor.advance(0)
        self.assertEqual(self.supervisor.workers[1].node, "chat-w1-1")
        self.assertIn("--node-id=chat-w1-1", self.reactor.spawned[2][1])

    def test_quick_deaths_back_off(self) -> None:
        delays = []
        for i in range(4):
            spawned = len(self.reactor.spawned)
            index = 0 if i == 0 else spawned - 1
            self.reactor.end(index, ProcessTerminated(exitCode=1))
            waited = 0.0
            while len(self.reactor.spawned) == spawned:
                self.reactor.advance(0.25)
                waited += 0.25
            delays.append(waited)
        self.assertEqual(delays, [0.5, 1.0, 2.0, 4.0])

    def test_stop_drains_every_worker(self) -> None:
        stopped = self.supervisor.stopService()
        for _, _, _, process in self.reactor.spawned:
            self.assertEqual(process.signals, ["TERM"])
        self.assertNoResult(stopped)
        self.reactor.end(0, ProcessDone(0))
        self.assertNoResult(stopped)
        self.reactor.end(1, ProcessDone(0))
        self.successResultOf(stopped)
        self.assertTrue(self.supervisor.clean)
        self.assertFalse(self.reactor.ports[0].listening)

    def test_unclean_stop(self) -> None:
        stopped = self.supervisor.stopService()
        self.reactor.end(0, ProcessDone(0))
        self.reactor.end(1, ProcessTerminated(exitCode=1))
        self.successResultOf(stopped)
        self.assertFalse(self.supervisor.clean)

    def test_worker_that_does_not_stop_is_killed(self) -> None:
        stopped = self.supervisor.stopService()
        self.reactor.end(0, ProcessDone(0))
        self.reactor.advance(20)
        process = self.reactor.spawned[1][3]
        self.assertEqual(process.signals, ["TERM", "KILL"])
        self.reactor.end(1, ProcessTerminated(signal=9))
        self.successResultOf(stopped)
        self.assertFalse(self.supervisor.clean)

    def test_no_restart_while_stopping(self) -> None:
        self.reactor.end(0, ProcessTerminated(exitCode=1))
        stopped = self.supervisor.stopService()
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.reactor.end(1, ProcessDone(0))
        self.successResultOf(stopped)
        self.assertTrue(self.supervisor.clean)


class ExitStatusTests(SynchronousTestCase):
    def test_exit_status_registered(self) -> None:
        with mock.patch.object(workers.atexit, "register") as register:
            workers.exit_status_at_exit(1)
        [(leave,), _] = register.call_args
        with mock.patch.object(workers.os, "_exit") as exit_:
            leave()
        exit_.assert_called_once_with(1)
