"""
Client side of the chat protocol: a sans-io connection core and the
C{chatsvc-client} terminal program.

The program itself lives in L{chatsvc.client.cli}; it is not imported here, so
that C{python -m chatsvc.client.cli} runs it without a second copy.
"""

from chatsvc.client.events import (
    ChatNotify,
    Echo,
    Event,
    NewUser,
    Response,
    UnknownPacket,
    UserLeft,
    UserList,
    parse_event,
)
from chatsvc.client.render import ChatView, describe_result, render_event

__all__ = [
    "ChatNotify",
    "ChatView",
    "Echo",
    "Event",
    "NewUser",
    "Response",
    "UnknownPacket",
    "UserLeft",
    "UserList",
    "describe_result",
    "parse_event",
    "render_event",
]
