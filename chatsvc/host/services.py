# -*- test-case-name: tests.test_services -*-
"""
The stages as Twisted services: what C{twistd} runs and what an existing
application attaches to its own C{MultiService}.
"""

from __future__ import annotations

import ipaddress

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger

from chatsvc.content.chat import ChatConfig
from chatsvc.content.login import LoginBackend, OpenLogin
from chatsvc.host.applications import ChatApplication, PacketEcho, UnknownPackets
from chatsvc.host.options import ChatOptions, EchoOptions, SendQueueOptions
from chatsvc.host.redis_login import RedisLogin, RedisURL
from chatsvc.net.config import NetConfig
from chatsvc.net.connection import default_reactor, describe_peer
from chatsvc.net.echo import EchoFactory
from chatsvc.net.session import SessionFactory

log = Logger()


class ListeningService(Service):
    """
    Listens on a server endpoint string and logs where, and on which reactor.

    @ivar port: the listening port once listening.
    """

    def __init__(
        self, stage: str, endpoint: str, factory: ServerFactory, reactor: IReactorTime
    ) -> None:
        self.stage = stage
        self.endpoint = endpoint
        self.factory = factory
        self.reactor = reactor
        self.port: IListeningPort | None = None
        self.listening: Deferred[IListeningPort] = Deferred()

    def startService(self) -> None:
        super().startService()
        listening = serverFromString(self.reactor, self.endpoint).listen(self.factory)
        failures: list[BaseException] = []
        listening.addCallbacks(self._listening, failures.append)
        if failures:
            # Endpoints that fail synchronously (a port in use) stop twistd.
            raise failures[0].value  # type: ignore[attr-defined]

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        log.info(
            "chatsvc {stage} listening on {address} ({reactor})",
            stage=self.stage,
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


def echo_service(
    endpoint: str, config: NetConfig, reactor: IReactorTime | None = None
) -> ListeningService:
    """
    The echo stage: raw bytes back.
    """
    reactor = reactor or default_reactor()
    return ListeningService("echo", endpoint, EchoFactory(config, reactor), reactor)


def sendqueue_service(
    endpoint: str,
    config: NetConfig,
    reactor: IReactorTime | None = None,
    *,
    disconnect_unknown: bool = False,
) -> ListeningService:
    """
    The send-queue stage: framed DEV_ECHO through per-session send queues.
    """
    reactor = reactor or default_reactor()
    app = PacketEcho(UnknownPackets(disconnect_unknown))
    return ListeningService(
        "sendqueue", endpoint, SessionFactory(app, config, reactor), reactor
    )


class ChatService(MultiService):
    """
    The chat stage: a listening service plus its login back end, closed on stop.
    """

    def __init__(
        self,
        endpoint: str,
        config: NetConfig,
        chat: ChatConfig,
        login: LoginBackend,
        reactor: IReactorTime | None = None,
        *,
        disconnect_unknown: bool = False,
    ) -> None:
        super().__init__()
        reactor = reactor or default_reactor()
        self.login = login
        self.application = ChatApplication(
            chat, login, reactor.seconds, UnknownPackets(disconnect_unknown)
        )
        self.factory = SessionFactory(self.application, config, reactor)
        self.factory.pump.add_turn_hook(self.application.end_of_turn)
        self.listener = ListeningService("chat", endpoint, self.factory, reactor)
        self.listener.setServiceParent(self)
        self.listener.listening.addCallback(self._warn_if_open)

    def _warn_if_open(self, port: IListeningPort) -> IListeningPort:
        log.info("Logins checked by {login}", login=self.login.description)
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

    def stopService(self) -> Deferred[None]:
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        await super().stopService()
        await self.login.close()


def chat_service(
    endpoint: str,
    config: NetConfig,
    chat: ChatConfig,
    redis: RedisURL | None = None,
    reactor: IReactorTime | None = None,
    *,
    redis_key_prefix: bytes = b"",
    redis_timeout: float = 2.0,
    disconnect_unknown: bool = False,
) -> ChatService:
    """
    The chat stage, with open login or, given C{redis}, Redis login.
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
        endpoint, config, chat, login, reactor, disconnect_unknown=disconnect_unknown
    )


def make_echo_service(options: EchoOptions) -> IService:
    """
    C{twistd chatsvc-echo}.
    """
    return echo_service(options["listen"], options.net)


def make_sendqueue_service(options: SendQueueOptions) -> IService:
    """
    C{twistd chatsvc-sendqueue}.
    """
    return sendqueue_service(
        options["listen"], options.net, disconnect_unknown=options["disconnect-unknown"]
    )


def make_chat_service(options: ChatOptions) -> IService:
    """
    C{twistd chatsvc}.
    """
    return chat_service(
        options["listen"],
        options.net,
        options.chat,
        options.redis,
        redis_key_prefix=options["redis-key-prefix"].encode("utf-8"),
        redis_timeout=options["redis-timeout"],
        disconnect_unknown=options["disconnect-unknown"],
    )


__all__ = [
    "ChatService",
    "ListeningService",
    "chat_service",
    "echo_service",
    "make_chat_service",
    "make_echo_service",
    "make_sendqueue_service",
    "sendqueue_service",
]
