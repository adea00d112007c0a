# -*- test-case-name: tests.test_services -*-
"""
The stages as Twisted services: what C{twistd} runs and what an existing
application attaches to its own C{MultiService}.
"""

from __future__ import annotations

import ipaddress
import os
import signal
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any, Protocol, cast

from prometheus_client import CollectorRegistry
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import (
    Deferred,
    ensureDeferred,
    gatherResults,
    maybeDeferred,
)
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import Logger

from chatsvc._version import __version__
from chatsvc.cluster.chat import ClusterChat
from chatsvc.cluster.config import ClusterConfig
from chatsvc.cluster.metrics import register_cluster_metrics
from chatsvc.content.chat import ChatConfig
from chatsvc.content.login import LoginBackend, OpenLogin
from chatsvc.host.applications import ChatApplication, PacketEcho, UnknownPackets
from chatsvc.host.metrics import (
    HealthCheck,
    StageCollector,
    metrics_site,
    redis_latency,
)
from chatsvc.host.options import ChatOptions, EchoOptions, NetOptions, SendQueueOptions
from chatsvc.host.redis_login import RedisLogin, RedisURL
from chatsvc.host.settings import HostConfig
from chatsvc.host.workers import (
    SUPERVISOR_ENV,
    ListenWhenReady,
    WorkerPlan,
    WorkerSupervisor,
    exit_status_at_exit,
    watch_supervisor,
)
from chatsvc.net.config import NetConfig
from chatsvc.net.connection import LimitedFactory, default_reactor, describe_peer
from chatsvc.net.echo import EchoFactory
from chatsvc.net.session import SessionFactory, send_to_all
from chatsvc.protocol import PacketId
from chatsvc.web.site import chat_site

log = Logger()

#: Where a stage listens: an endpoint string, or an endpoint.
Endpoint = str | IStreamServerEndpoint


class ListeningService(Service):
    """
    Listens on a server endpoint string and logs where, and on which reactor.

    @ivar port: the listening port while listening.
    @ivar listening: fires with the port once listening.
    """

    def __init__(
        self,
        name: str,
        endpoint: Endpoint,
        factory: IProtocolFactory,
        reactor: IReactorTime,
    ) -> None:
        self.setName(name)
        self.endpoint = endpoint
        self.factory = factory
        self.reactor = reactor
        self.port: IListeningPort | None = None
        self.listening: Deferred[IListeningPort] = Deferred()

    def startService(self) -> None:
        super().startService()
        endpoint = self.endpoint
        if isinstance(endpoint, str):
            endpoint = serverFromString(self.reactor, endpoint)
        listening = endpoint.listen(self.factory)
        failures: list[Any] = []
        listening.addCallbacks(self._listening, failures.append)
        if failures:
            # Endpoints that fail synchronously (a port in use) stop twistd.
            raise failures[0].value

    def _listening(self, port: IListeningPort) -> None:
        if not self.running:
            # Stopped while the endpoint was getting ready to listen.
            port.stopListening()
            return
        self.port = port
        log.info(
            "chatsvc {stage} listening on {address} ({reactor})",
            stage=self.name,
            address=describe_peer(port.getHost()),
            reactor=f"{type(self.reactor).__module__}.{type(self.reactor).__name__}",
        )
        self.listening.callback(port)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self.port is None:
            return None
        port, self.port = self.port, None
        return port.stopListening()


class StageService(MultiService):
    """
    One stage: its listener, its metrics endpoint if asked for, and a graceful
    shutdown (stop accepting, let queued output out, close, release).

    @ivar registry: the Prometheus registry of this stage's metrics.
    """

    def __init__(
        self,
        stage: str,
        endpoint: Endpoint,
        factory: LimitedFactory,
        host: HostConfig,
        reactor: IReactorTime,
        collector: StageCollector,
        checks: Iterable[HealthCheck] = (),
    ) -> None:
        super().__init__()
        self.settings: dict[str, object] = {}
        self.stage = stage
        self.factory = factory
        self.host = host
        self.listener = ListeningService(stage, endpoint, factory, reactor)
        self.listener.setServiceParent(self)
        #: Every service accepting connections of this stage's factory.
        self.listeners = [self.listener]
        self.registry = CollectorRegistry()
        self.registry.register(collector)
        self.metrics: ListeningService | None = None
        if host.metrics is not None:
            site = metrics_site(self.registry, [self._accepting, *checks])
            self.metrics = ListeningService("metrics", host.metrics, site, reactor)
            self.metrics.setServiceParent(self)

    def startService(self) -> None:
        log.info(
            "chatsvc {version} starting the {stage} stage: {settings}",
            version=__version__,
            stage=self.stage,
            settings=", ".join(f"{k}={v}" for k, v in sorted(self.settings.items()))
            or "defaults",
        )
        super().startService()

    def _accepting(self) -> str | None:
        if self.running and self.listener.port is not None:
            return None
        return f"{self.stage} is not accepting connections"

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return ensureDeferred(self._shut_down())

    async def _shut_down(self) -> None:
        await gatherResults(
            [maybeDeferred(listener.stopService) for listener in self.listeners]
        )
        log.info(
            "chatsvc {stage} stopping: closing {count} connections once their"
            " queued output is written (up to {grace} s)",
            stage=self.stage,
            count=len(self.factory.connections),
            grace=self.host.shutdown_grace,
        )
        await self.factory.shutdown(self.host.shutdown_grace)
        await self.release()
        if self.metrics is not None:
            await maybeDeferred(self.metrics.stopService)
        log.info("chatsvc {stage} stopped", stage=self.stage)

    async def release(self) -> None:
        """
        Let go of what the stage holds besides connections.
        """


def echo_service(
    endpoint: Endpoint,
    config: NetConfig,
    reactor: IReactorTime | None = None,
    host: HostConfig | None = None,
) -> StageService:
    """
    The echo stage: raw bytes back.
    """
    reactor = reactor or default_reactor()
    factory = EchoFactory(config, reactor)
    return StageService(
        "echo",
        endpoint,
        factory,
        host or HostConfig(),
        reactor,
        StageCollector(factory),
    )


def sendqueue_service(
    endpoint: Endpoint,
    config: NetConfig,
    reactor: IReactorTime | None = None,
    host: HostConfig | None = None,
    *,
    disconnect_unknown: bool = False,
) -> StageService:
    """
    The send-queue stage: framed DEV_ECHO through per-session send queues.
    """
    reactor = reactor or default_reactor()
    app = PacketEcho(UnknownPackets(disconnect_unknown))
    factory = SessionFactory(app, config, reactor, known_ids=PacketId)
    collector = StageCollector(
        factory, packets_out=app.packets_out, bytes_out=app.bytes_out
    )
    return StageService(
        "sendqueue", endpoint, factory, host or HostConfig(), reactor, collector
    )


class ChatService(StageService):
    """
    The chat stage: sessions, the chat rules and a login back end; given a
    cluster configuration, one node of a cluster.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        config: NetConfig,
        chat: ChatConfig,
        login: LoginBackend,
        reactor: IReactorTime | None = None,
        host: HostConfig | None = None,
        *,
        disconnect_unknown: bool = False,
        cluster: ClusterConfig | None = None,
    ) -> None:
        reactor = reactor or default_reactor()
        self.login = login
        self.cluster = (
            None
            if cluster is None
            else ClusterChat(reactor, cluster, chat.room_capacity, send_to_all)
        )
        self.application = ChatApplication(
            chat,
            login,
            reactor.seconds,
            UnknownPackets(disconnect_unknown),
            self.cluster,
        )
        factory = SessionFactory(self.application, config, reactor, known_ids=PacketId)
        if self.cluster is not None:
            self.cluster.rooms.wake = factory.pump.run_soon
        server = self.application.server
        collector = StageCollector(
            factory,
            server,
            lambda: dict(server.stats.packets_out),
            lambda: dict(server.stats.bytes_out),
        )
        checks: list[HealthCheck] = []
        if isinstance(login, RedisLogin):
            checks.append(login.health)
        if self.cluster is not None:
            checks.append(self.cluster.node.link.health)
        super().__init__(
            "chat", endpoint, factory, host or HostConfig(), reactor, collector, checks
        )
        if isinstance(login, RedisLogin):
            login.observe_latency = redis_latency(self.registry).observe
        if self.cluster is not None:
            register_cluster_metrics(self.registry, self.cluster.node)
        self.listener.listening.addCallback(self._log_login)
        self.web: ListeningService | None = None
        if self.host.web is not None:
            site = chat_site(factory, chat, self.host.web_origins, reactor)
            self.web = ListeningService("web", self.host.web, site, reactor)
            self.web.setServiceParent(self)
            self.web.listening.addCallback(self._warn_if_open)
            self.listeners.append(self.web)

    def _log_login(self, port: IListeningPort) -> IListeningPort:
        log.info("Logins checked by {login}", login=self.login.description)
        return self._warn_if_open(port)

    def startService(self) -> None:
        super().startService()
        if self.cluster is not None:
            log.info(
                "Node {node} of the cluster at {redis}",
                node=self.cluster.node.config.node_id,
                redis=self.cluster.node.link.description,
            )
            self.cluster.node.start()

    def _warn_if_open(self, port: IListeningPort) -> IListeningPort:
        host = getattr(port.getHost(), "host", "")
        try:
            loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            loopback = False
        if isinstance(self.login, OpenLogin) and not loopback:
            log.warn(
                "Open login on {address}: ANYONE who can reach it can log in as any"
                " user. Use --redis, or listen on 127.0.0.1 only.",
                address=describe_peer(port.getHost()),
            )
        return port

    async def release(self) -> None:
        if self.cluster is not None:
            self.cluster.rooms.close()
            await self.cluster.node.stop()
        await self.login.close()


def chat_service(
    endpoint: Endpoint,
    config: NetConfig,
    chat: ChatConfig,
    redis: RedisURL | None = None,
    reactor: IReactorTime | None = None,
    host: HostConfig | None = None,
    *,
    redis_key_prefix: bytes = b"",
    redis_timeout: float = 2.0,
    disconnect_unknown: bool = False,
    cluster: ClusterConfig | None = None,
) -> ChatService:
    """
    The chat stage, with open login or, given C{redis}, Redis login; given
    C{cluster}, one node of that cluster.
    """
    reactor = reactor or default_reactor()
    login: LoginBackend = (
        OpenLogin()
        if redis is None
        else RedisLogin(
            reactor, redis, key_prefix=redis_key_prefix, timeout=redis_timeout
        )
    )
    return ChatService(
        endpoint,
        config,
        chat,
        login,
        reactor,
        host,
        disconnect_unknown=disconnect_unknown,
        cluster=cluster,
    )


class _RunningReactor(Protocol):
    def callWhenRunning(self, callable: Callable[[], object]) -> object: ...
    def callFromThread(self, callable: Callable[[], object]) -> None: ...
    def stop(self) -> None: ...


def exit_cleanly_on_signals(reactor: _RunningReactor) -> None:
    """
    Once the reactor runs, make SIGTERM and SIGINT stop it gracefully with exit
    status 0 (twistd's own handlers re-raise the signal after the shutdown).
    """

    stopping = False

    def stop(number: int, frame: FrameType | None) -> None:
        nonlocal stopping
        name = signal.Signals(number).name
        if stopping:
            log.info("Received {signal}, already shutting down", signal=name)
            return
        stopping = True
        log.info("Received {signal}, shutting down", signal=name)
        reactor.callFromThread(reactor.stop)

    def install() -> None:
        for name in ("SIGTERM", "SIGINT"):
            number = getattr(signal, name, None)
            if number is not None:
                signal.signal(number, stop)

    reactor.callWhenRunning(install)


def _twistd_service(service: StageService, options: NetOptions) -> IService:
    service.settings = options.effective()
    exit_cleanly_on_signals(cast(_RunningReactor, default_reactor()))
    return service


def make_echo_service(options: EchoOptions) -> IService:
    """
    C{twistd chatsvc-echo}.
    """
    return _twistd_service(
        echo_service(options.endpoint, options.net, host=options.host), options
    )


def make_sendqueue_service(options: SendQueueOptions) -> IService:
    """
    C{twistd chatsvc-sendqueue}.
    """
    return _twistd_service(
        sendqueue_service(
            options.endpoint,
            options.net,
            host=options.host,
            disconnect_unknown=options["disconnect-unknown"],
        ),
        options,
    )


def make_chat_service(options: ChatOptions) -> IService:
    """
    C{twistd chatsvc}: the chat server, or with C{--workers} the workers'
    supervisor.
    """
    if options.workers is not None:
        return _supervisor(options, options.workers)
    service = chat_service(
        options.endpoint,
        options.net,
        options.chat,
        options.redis,
        host=options.host,
        redis_key_prefix=options["redis-key-prefix"].encode("utf-8"),
        redis_timeout=options["redis-timeout"],
        disconnect_unknown=options["disconnect-unknown"],
        cluster=options.cluster,
    )
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if supervisor is not None and options["listen-fd"] is not None:
        _as_worker(service, int(supervisor))
    if service.cluster is not None:
        service.cluster.node.on_refused = _stop_refused
    return _twistd_service(service, options)


def _stop_refused(reason: str) -> None:
    """
    Stop a node the cluster did not let join, with exit status 1.
    """
    exit_status_at_exit(1)
    reactor = cast(IReactorCore, default_reactor())
    if reactor.running:
        reactor.stop()


def _as_worker(service: ChatService, supervisor: int) -> None:
    """
    Make C{service} a worker of the supervisor with process id
    C{supervisor}: it takes connections once its cluster link is up, and
    stops when the supervisor is gone.
    """
    reactor = cast(IReactorCore, default_reactor())
    reactor.callWhenRunning(watch_supervisor, reactor, supervisor)
    cluster = service.cluster
    endpoint = service.listener.endpoint
    if cluster is not None and not isinstance(endpoint, str):
        service.listener.endpoint = ListenWhenReady(
            endpoint,
            lambda: cluster.node.link.connected,
            cast(IReactorTime, reactor),
            cluster.node.config.node_timeout,
        )


def _supervisor(options: NetOptions, plan: WorkerPlan) -> IService:
    reactor = default_reactor()
    supervisor = WorkerSupervisor(options["listen"], plan, reactor)
    exit_cleanly_on_signals(cast(_RunningReactor, reactor))

    def exit_status() -> None:
        if not supervisor.clean:
            exit_status_at_exit(1)

    cast(IReactorCore, reactor).addSystemEventTrigger("after", "shutdown", exit_status)
    return supervisor
