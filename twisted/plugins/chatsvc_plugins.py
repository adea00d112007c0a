"""
twistd plugins of chatsvc: C{twistd -n chatsvc}, C{twistd -n chatsvc-echo},
C{twistd -n chatsvc-sendqueue}.
"""

from chatsvc.host.options import ChatOptions, EchoOptions, SendQueueOptions
from chatsvc.host.plugins import StageMaker
from chatsvc.host.services import (
    make_chat_service,
    make_echo_service,
    make_sendqueue_service,
)

chatsvc = StageMaker(
    "chatsvc",
    "The chat server: login (open or Redis), rooms and room chat.",
    ChatOptions,
    make_chat_service,
)
chatsvc_echo = StageMaker(
    "chatsvc-echo",
    "Raw echo server (tutorial steps 1-3, 7).",
    EchoOptions,
    make_echo_service,
)
chatsvc_sendqueue = StageMaker(
    "chatsvc-sendqueue",
    "Framed DEV_ECHO server with per-session send queues (tutorial steps 4-6).",
    SendQueueOptions,
    make_sendqueue_service,
)
