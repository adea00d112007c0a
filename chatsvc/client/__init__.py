"""
The C{chatsvc-client} terminal program: what it shows for each server event
(L{chatsvc.client.render}) and the program itself (L{chatsvc.client.cli}).
The wire protocol it speaks is L{chatsvc.protocol}'s.

The program is not imported here, so that C{python -m chatsvc.client.cli}
runs it without a second copy.
"""

from chatsvc.client.render import ChatView, describe_result, render_event

__all__ = [
    "ChatView",
    "describe_result",
    "render_event",
]
