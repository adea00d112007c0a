"""
The C{chatsvc-client} terminal program: an input line to a command
(L{chatsvc.client.commands}), server events to lines of text
(L{chatsvc.client.render}), the connection (L{chatsvc.client.connection}),
the session (L{chatsvc.client.session}), the screens
(L{chatsvc.client.console}, L{chatsvc.client.terminal}) and the command line
(L{chatsvc.client.cli}). The wire protocol it speaks is L{chatsvc.protocol}'s.

The program is not imported here, so that C{python -m chatsvc.client.cli}
runs it without a second copy.
"""

from chatsvc.client.render import ChatView, describe_result, render_event

__all__ = [
    "ChatView",
    "describe_result",
    "render_event",
]
