"""
The content layer (the tutorial's "Content" library): users, rooms and the
login and chat rules. Plain Python: it knows nothing of sockets or reactors.
"""

from chatsvc.content.chat import ChatConfig, ChatServer, Client, Outbox, State
from chatsvc.content.login import LoginBackend, OpenLogin
from chatsvc.content.presence import LocalPresence, Presence
from chatsvc.content.rooms import Room, Rooms

__all__ = [
    "ChatConfig",
    "ChatServer",
    "Client",
    "LocalPresence",
    "LoginBackend",
    "OpenLogin",
    "Outbox",
    "Presence",
    "Room",
    "Rooms",
    "State",
]
