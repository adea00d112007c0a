"""
twistd plugins of chatsvc: C{twistd -n chatsvc}, C{twistd -n chatsvc-echo},
C{twistd -n chatsvc-sendqueue}, and the reactor C{twistd
--reactor=chatsvc-epoll}. Importing this module imports no reactor (see
L{chatsvc.host.plugins}).
"""

from twisted.application.reactors import Reactor

from chatsvc.host.plugins import StageMaker

chatsvc = StageMaker(
    "chatsvc",
    "The chat server: login (open or Redis), rooms and room chat.",
    "chatsvc.host.options.ChatOptions",
    "chatsvc.host.services.make_chat_service",
)
chatsvc_echo = StageMaker(
    "chatsvc-echo",
    "Raw echo server (tutorial steps 1-3, 7).",
    "chatsvc.host.options.EchoOptions",
    "chatsvc.host.services.make_echo_service",
)
chatsvc_sendqueue = StageMaker(
    "chatsvc-sendqueue",
    "Framed DEV_ECHO server with per-session send queues (tutorial steps 4-6).",
    "chatsvc.host.options.SendQueueOptions",
    "chatsvc.host.services.make_sendqueue_service",
)
chatsvc_epoll = Reactor(
    "chatsvc-epoll",
    "chatsvc.net.reactor",
    "Twisted's epoll reactor without the per-event log context (Linux).",
)
