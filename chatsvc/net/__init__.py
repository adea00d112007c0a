"""
The network layer (the tutorial's "Network" library): sessions, send queues,
fair dispatch and connection limits. It knows nothing of chat; the framing it
decodes is L{chatsvc.protocol}'s.

The names below are imported on first use: importing this package loads
neither Twisted's reactor nor anything else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatsvc._lazy import lazy_exports

if TYPE_CHECKING:
    from chatsvc.net.config import NetConfig
    from chatsvc.net.echo import EchoFactory, RawEcho
    from chatsvc.net.session import Application, Session, SessionFactory, send_to_all
    from chatsvc.net.turn import Pump

_LAZY = {
    "NetConfig": "chatsvc.net.config",
    "EchoFactory": "chatsvc.net.echo",
    "RawEcho": "chatsvc.net.echo",
    "Application": "chatsvc.net.session",
    "Session": "chatsvc.net.session",
    "SessionFactory": "chatsvc.net.session",
    "send_to_all": "chatsvc.net.session",
    "Pump": "chatsvc.net.turn",
}

__all__ = [
    "Application",
    "EchoFactory",
    "NetConfig",
    "Pump",
    "RawEcho",
    "Session",
    "SessionFactory",
    "send_to_all",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
