# -*- test-case-name: tests.test_workers,tests.test_workers_processes -*-
"""
C{--workers N}: one listening socket, N chatsvc processes accepting on it,
each a node of the cluster, supervised.

The supervisor (the process twistd started) makes the listening socket once,
never accepts on it, and hands it to every worker as file descriptor 3; the
worker adopts it with the reactor's C{adoptStreamPort} (C{--listen-fd 3}).
All workers wait on the one socket and its one accept queue: the kernel
gives each connection to a worker that is waiting in its event loop, so an
idle worker takes more than a busy one, and a worker that dies leaves the
connections not yet accepted to the others (with C{SO_REUSEPORT} every
worker would have an accept queue of its own, filled by a hash of the
client's address whatever its load, and lost with it).

A worker that exits while the supervisor runs is logged and replaced by a
new process with a new node id (the cluster sweeps the old node). SIGTERM
or SIGINT to the supervisor sends SIGTERM to every worker, which drains as a
single server does; the supervisor exits with status 0 only if every worker
then exited with 0.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from twisted.application.reactors import getReactorTypes
from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IReactorProcess,
    IReactorSocket,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatsvc.net.connection import describe_peer

log = Logger()

#: The file descriptor a worker finds the shared listening socket on.
LISTEN_FD = 3
#: Set in a worker's environment to the supervisor's process id.
SUPERVISOR_ENV = "CHATSVC_SUPERVISOR"
#: Endpoint types whose sockets can be shared: plain stream sockets.
SHAREABLE = frozenset({"tcp", "tcp6", "unix"})
#: A worker that ran at least this long before it died is restarted at once.
STABLE_SECONDS = 10.0


def cores() -> int:
    """
    How many cores this process may run on.
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_count(value: str) -> int:
    """
    The value of C{--workers}: a number of workers, 0 or C{auto} meaning
    one per core.
    """
    count = 0 if value.strip().lower() == "auto" else int(value)
    if count < 0:
        raise ValueError(f"{value} is negative")
    return count or cores()


worker_count.coerceDoc = "A number of workers; 0 or auto: one per core."  # type: ignore[attr-defined]


def refusal(reactor: object) -> str | None:
    """
    Why C{reactor} cannot run workers on one shared port, or L{None}.
    """
    if IReactorSocket.providedBy(reactor) and IReactorProcess.providedBy(reactor):
        return None
    name = type(reactor).__name__
    return (
        f"--workers: the {name} cannot share a listening socket between"
        " processes (it has no adoptStreamPort); run one `twistd -n chatsvc"
        " --cluster URL --listen tcp:PORT` per core instead, each on its own"
        " port (11021, 11022, ...), and spread the clients over those ports"
    )


def endpoint_type(endpoint: str) -> str:
    """
    The type of a server endpoint string (C{tcp}, C{unix}, C{ssl}, ...).
    """
    return endpoint.split(":", 1)[0].strip().lower()


_FIELDS = re.compile(r"((?:\\.|[^:\\])*)(:|$)")


def shift_port(endpoint: str, offset: int) -> str:
    """
    The TCP endpoint C{endpoint} with its port number raised by C{offset}
    (port 0 stays 0: any free port).

    @raise ValueError: if C{endpoint} is not a TCP endpoint with a port.
    """
    fields = [m.group(1) for m in _FIELDS.finditer(endpoint) if m.group(0)]
    if endpoint.endswith(":"):
        fields.append("")
    if len(fields) < 2 or endpoint_type(endpoint) not in ("tcp", "tcp6"):
        raise ValueError(f"{endpoint!r} is not a tcp: or tcp6: endpoint with a port")
    for i, field in enumerate(fields[1:], 1):
        key, equals, value = field.partition("=")
        if i == 1 and not equals:
            key, value = "", field
        elif key != "port":
            continue
        if not value.isdigit():
            raise ValueError(f"{endpoint!r}: port {value!r} is not a number")
        port = int(value)
        fields[i] = f"{key}{'=' if key else ''}{port + offset if port else 0}"
        return ":".join(fields)
    raise ValueError(f"{endpoint!r} has no port")


def worker_log_file(path: str, index: int) -> str:
    """
    The log file of worker C{index}: C{chatsvc.log} -> C{chatsvc-w1.log}.
    """
    pure = PurePath(path)
    return str(pure.with_name(f"{pure.stem}-w{index}{pure.suffix}"))


def adopted_endpoint(reactor: object, fd: int) -> IStreamServerEndpoint:
    """
    A server endpoint listening on the inherited listening socket C{fd}.

    @raise ValueError: if C{fd} is not a socket, or C{reactor} cannot adopt it.
    """
    problem = refusal(reactor)
    if problem is not None:
        raise ValueError(problem.replace("--workers", f"--listen-fd {fd}", 1))
    try:
        probe = socket.socket(fileno=fd)
    except OSError as e:
        raise ValueError(f"--listen-fd {fd}: not a socket ({e.strerror})") from None
    family = probe.family
    probe.detach()
    return AdoptedStreamServerEndpoint(reactor, fd, family)


@implementer(IStreamServerEndpoint)
class ListenWhenReady:
    """
    Listens on C{endpoint} once C{ready()} is true, or after C{timeout}
    seconds regardless: a worker joining the shared port takes connections
    only once its cluster link can serve them, while the other workers take
    them until then.
    """

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        ready: Callable[[], bool],
        reactor: IReactorTime,
        timeout: float,
    ) -> None:
        self._endpoint = endpoint
        self._ready = ready
        self._reactor = reactor
        self._timeout = timeout

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        return ensureDeferred(self._listen(factory))

    async def _listen(self, factory: IProtocolFactory) -> IListeningPort:
        deadline = self._reactor.seconds() + self._timeout
        while not self._ready() and self._reactor.seconds() < deadline:
            await deferLater(self._reactor, 0.05)
        port: IListeningPort = await self._endpoint.listen(factory)
        return port


def watch_supervisor(reactor: IReactorCore, supervisor: int) -> LoopingCall:
    """
    Stop this worker, gracefully, once its supervisor is gone (it was killed
    and cannot stop its workers itself).
    """

    def check() -> None:
        if os.getppid() != supervisor:
            log.error(
                "The supervisor (pid {pid}) is gone; stopping this worker",
                pid=supervisor,
            )
            watching.stop()
            reactor.stop()

    watching = LoopingCall(check)
    watching.clock = reactor  # type: ignore[assignment]
    watching.start(1.0, now=False)
    return watching


def _reactor_name(reactor: object) -> str | None:
    module = type(reactor).__module__
    for kind in getReactorTypes():
        if getattr(kind, "moduleName", None) == module:
            return str(kind.shortName)
    return None


def exit_status_at_exit(status: int) -> None:
    """
    Make this process exit with C{status} once twistd has finished (twistd
    itself exits with 0 after a shutdown).
    """

    def leave() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    atexit.register(leave)


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """
    What every worker runs.

    @ivar count: how many workers.
    @ivar args: the C{chatsvc} options every worker gets.
    @ivar node_id: the base of the workers' node ids.
    @ivar metrics: the first worker's metrics endpoint; the others' ports
        follow it.
    @ivar log_file: the log file the workers' own files are named after.
    @ivar stop_timeout: seconds a stopping worker gets before it is killed.
    """

    count: int
    args: Sequence[str]
    node_id: str
    metrics: str | None = None
    log_file: str | None = None
    stop_timeout: float = 20.0

    def node(self, index: int, generation: int) -> str:
        """
        The node id of the C{generation}th process of worker C{index}.
        """
        name = f"{self.node_id}-w{index}"
        return name if generation == 0 else f"{name}-{generation}"

    def worker_args(self, index: int, generation: int) -> list[str]:
        """
        The C{chatsvc} options of that process.
        """
        args = [*self.args, f"--listen-fd={LISTEN_FD}"]
        args.append(f"--node-id={self.node(index, generation)}")
        if self.metrics is not None:
            args.append(f"--metrics={shift_port(self.metrics, index - 1)}")
        if self.log_file is not None:
            args.append(f"--log-file={worker_log_file(self.log_file, index)}")
        return args


class Worker(ProcessProtocol):
    """
    One running worker process.
    """

    def __init__(
        self,
        index: int,
        node: str,
        started: float,
        ended: Callable[[Worker, Failure], None],
    ) -> None:
        self.index = index
        self.node = node
        self.started = started
        self.pid: int | None = None
        self.stopping = False
        self._ended = ended

    def connectionMade(self) -> None:
        self.pid = self.transport.pid if self.transport is not None else None

    def processEnded(self, reason: Failure) -> None:
        self._ended(self, reason)

    def signal(self, name: str) -> None:
        """
        Send the process signal C{name} (C{TERM}, C{KILL}) if it still runs.
        """
        if self.transport is not None:
            with contextlib.suppress(ProcessExitedAlready):
                self.transport.signalProcess(name)


def _describe_exit(reason: Failure) -> str:
    value = reason.value
    if isinstance(value, ProcessDone):
        return "exited with status 0"
    signal_number = getattr(value, "signal", None)
    if signal_number is not None:
        return f"was killed by {signal.Signals(signal_number).name}"
    return f"exited with status {getattr(value, 'exitCode', '?')}"


class WorkerSupervisor(Service):
    """
    The listening socket and the workers sharing it.

    @ivar workers: the running workers, by index (from 1).
    @ivar clean: after stopping, whether every worker exited with status 0.
    """

    def __init__(
        self,
        endpoint: str,
        plan: WorkerPlan,
        reactor: Any,
        twistd: Sequence[str] | None = None,
    ) -> None:
        self.setName("workers")
        self.endpoint = endpoint
        self.plan = plan
        self.reactor = reactor
        self.twistd = list(twistd) if twistd is not None else self._twistd(reactor)
        self.workers: dict[int, Worker] = {}
        self.clean = True
        self.port: IListeningPort | None = None
        self._generations = dict.fromkeys(range(1, plan.count + 1), 0)
        self._failures = dict.fromkeys(range(1, plan.count + 1), 0)
        self._restarts: dict[int, IDelayedCall] = {}
        self._all_ended: Deferred[None] | None = None

    @staticmethod
    def _twistd(reactor: object) -> list[str]:
        command = [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "-n",
            "--pidfile=",
        ]
        name = _reactor_name(reactor)
        if name is not None:
            command.append(f"--reactor={name}")
        return command

    def startService(self) -> None:
        super().startService()
        failures: list[Failure] = []
        factory = Factory.forProtocol(Protocol)
        factory.noisy = False
        listening = serverFromString(self.reactor, self.endpoint).listen(factory)
        listening.addCallbacks(self._listening, failures.append)
        if failures:
            failures[0].raiseException()

    def _listening(self, port: IListeningPort) -> None:
        # The supervisor holds the socket but never accepts on it.
        port.stopReading()  # type: ignore[attr-defined]
        self.port = port
        log.info(
            "chatsvc workers listening on {address} ({count} workers, {reactor})",
            address=describe_peer(port.getHost()),
            count=self.plan.count,
            reactor=f"{type(self.reactor).__module__}.{type(self.reactor).__name__}",
        )
        for index in range(1, self.plan.count + 1):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        self._restarts.pop(index, None)
        assert self.port is not None
        generation = self._generations[index]
        node = self.plan.node(index, generation)
        worker = Worker(index, node, self.reactor.seconds(), self._ended)
        self.reactor.spawnProcess(
            worker,
            self.twistd[0],
            [*self.twistd, "chatsvc", *self.plan.worker_args(index, generation)],
            env={**os.environ, SUPERVISOR_ENV: str(os.getpid())},
            childFDs={0: 0, 1: 1, 2: 2, LISTEN_FD: self.port.fileno()},  # type: ignore[attr-defined]
        )
        self.workers[index] = worker
        log.info(
            "Worker {index} started: pid {pid}, node {node}",
            index=index,
            pid=worker.pid,
            node=node,
        )

    def _ended(self, worker: Worker, reason: Failure) -> None:
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        how = _describe_exit(reason)
        if worker.stopping or not self.running:
            if not reason.check(ProcessDone):
                self.clean = False
                log.error(
                    "Worker {index} (pid {pid}) {how} while stopping",
                    index=worker.index,
                    pid=worker.pid,
                    how=how,
                )
            if not self.workers and self._all_ended is not None:
                self._all_ended.callback(None)
            return
        index = worker.index
        uptime = self.reactor.seconds() - worker.started
        self._failures[index] = (
            0 if uptime >= STABLE_SECONDS else self._failures[index] + 1
        )
        delay = (
            0.0
            if not self._failures[index]
            else min(30.0, 0.5 * 2 ** (self._failures[index] - 1))
        )
        self._generations[index] += 1
        log.error(
            "Worker {index} (pid {pid}, node {node}) {how} after {uptime:.1f} s;"
            " starting a new one as node {new} in {delay:.1f} s",
            index=index,
            pid=worker.pid,
            node=worker.node,
            how=how,
            uptime=uptime,
            new=self.plan.node(index, self._generations[index]),
            delay=delay,
        )
        self._restarts[index] = self.reactor.callLater(delay, self._spawn, index)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        for restart in self._restarts.values():
            restart.cancel()
        self._restarts.clear()
        stopped: Deferred[None] = Deferred()
        if self.workers:
            self._all_ended = Deferred()
            log.info(
                "Stopping {count} workers (each drains its connections)",
                count=len(self.workers),
            )
            for worker in self.workers.values():
                worker.stopping = True
                worker.signal("TERM")
            kill = self.reactor.callLater(self.plan.stop_timeout, self._kill)
            self._all_ended.addCallback(
                lambda _: kill.cancel() if kill.active() else None
            )
            self._all_ended.addCallback(self._close)
            self._all_ended.chainDeferred(stopped)
        else:
            self._close(None)
            stopped.callback(None)
        return stopped

    def _kill(self) -> None:
        for worker in self.workers.values():
            log.error(
                "Worker {index} (pid {pid}) did not stop within {timeout} s;"
                " killing it",
                index=worker.index,
                pid=worker.pid,
                timeout=self.plan.stop_timeout,
            )
            worker.signal("KILL")

    def _close(self, result: object) -> None:
        if self.port is not None:
            self.port.stopListening()
            self.port = None
        if self.clean:
            log.info("All workers stopped cleanly")
        else:
            log.error("Not every worker stopped cleanly: exiting with status 1")
