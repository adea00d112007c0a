"""
chatsvc: a completion-port chat server on Twisted, wire-compatible with the
edu_cpp_IOCP tutorial.

The stages, ready to attach to an existing Twisted application::

    from chatsvc import ChatConfig, NetConfig, chat_service
    chat = chat_service("tcp:11021:interface=127.0.0.1", NetConfig(), ChatConfig())
    chat.setServiceParent(app)
"""

from chatsvc._version import __version__
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

__all__ = [
    "ChatConfig",
    "ChatServer",
    "ChatService",
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
