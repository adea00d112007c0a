"""
chatsvc: a completion-port chat server on Twisted, wire-compatible with the
edu_cpp_IOCP tutorial.

The stages, ready to attach to an existing Twisted application::

    from chatsvc import ChatConfig, NetConfig, chat_service
    chat = chat_service("tcp:11021:interface=127.0.0.1", NetConfig(), ChatConfig())
    chat.setServiceParent(app)

The names below are imported on first use, so that importing C{chatsvc} (or
its pure layers, L{chatsvc.protocol} and L{chatsvc.content}) loads no Twisted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatsvc._lazy import lazy_exports
from chatsvc._version import __version__

if TYPE_CHECKING:
    from chatsvc.cluster.config import ClusterConfig
    from chatsvc.content.chat import ChatConfig, ChatServer
    from chatsvc.host.redis_login import RedisURL
    from chatsvc.host.services import (
        ChatService,
        ListeningService,
        StageService,
        chat_service,
        echo_service,
        exit_cleanly_on_signals,
        sendqueue_service,
    )
    from chatsvc.host.settings import HostConfig, LogSettings
    from chatsvc.net.config import NetConfig

_LAZY = {
    "ClusterConfig": "chatsvc.cluster.config",
    "ChatConfig": "chatsvc.content.chat",
    "ChatServer": "chatsvc.content.chat",
    "RedisURL": "chatsvc.host.redis_login",
    "ChatService": "chatsvc.host.services",
    "ListeningService": "chatsvc.host.services",
    "StageService": "chatsvc.host.services",
    "chat_service": "chatsvc.host.services",
    "echo_service": "chatsvc.host.services",
    "exit_cleanly_on_signals": "chatsvc.host.services",
    "sendqueue_service": "chatsvc.host.services",
    "HostConfig": "chatsvc.host.settings",
    "LogSettings": "chatsvc.host.settings",
    "NetConfig": "chatsvc.net.config",
}

__all__ = [
    "ChatConfig",
    "ChatServer",
    "ChatService",
    "ClusterConfig",
    "HostConfig",
    "ListeningService",
    "LogSettings",
    "NetConfig",
    "RedisURL",
    "StageService",
    "__version__",
    "chat_service",
    "echo_service",
    "exit_cleanly_on_signals",
    "sendqueue_service",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
