"""
chatsvc: a completion-port chat server on Twisted, wire-compatible with the
edu_cpp_IOCP tutorial.

The stages, ready to attach to an existing Twisted application::

    from chatsvc import ChatConfig, NetConfig, chat_service
    chat_service("tcp:11021", NetConfig(), ChatConfig()).setServiceParent(app)
"""

from chatsvc.content.chat import ChatConfig, ChatServer
from chatsvc.host.redis_login import RedisURL
from chatsvc.host.services import (
    ChatService,
    ListeningService,
    chat_service,
    echo_service,
    sendqueue_service,
)
from chatsvc.net.config import NetConfig

__version__ = "0.1.0"

__all__ = [
    "ChatConfig",
    "ChatServer",
    "ChatService",
    "ListeningService",
    "NetConfig",
    "RedisURL",
    "__version__",
    "chat_service",
    "echo_service",
    "sendqueue_service",
]
