"""
The host layer (the tutorial's "Host"): options, services, twistd plugins and
the wiring of the network and content layers.
"""

from chatsvc.host.applications import ChatApplication, PacketEcho, UnknownPackets
from chatsvc.host.redis_login import RedisLogin, RedisURL
from chatsvc.host.services import (
    ChatService,
    ListeningService,
    chat_service,
    echo_service,
    sendqueue_service,
)

__all__ = [
    "ChatApplication",
    "ChatService",
    "ListeningService",
    "PacketEcho",
    "RedisLogin",
    "RedisURL",
    "UnknownPackets",
    "chat_service",
    "echo_service",
    "sendqueue_service",
]
