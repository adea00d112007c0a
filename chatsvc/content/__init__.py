"""
The content layer (the tutorial's "Content" library): users, rooms and the
login and chat rules. Plain Python on top of L{chatsvc.protocol}: it imports
nothing of Twisted or of the network layer, and acts only through what it is
given (an outbox, a clock, presence, a room stream).
"""

from chatsvc.content.chat import ChatConfig, ChatServer, Outbox, State, User
from chatsvc.content.login import LoginBackend, OpenLogin
from chatsvc.content.presence import LocalPresence, Presence
from chatsvc.content.rooms import Room, Rooms
from chatsvc.content.roomstream import LocalRoomStream, RoomStream

__all__ = [
    "ChatConfig",
    "ChatServer",
    "LocalPresence",
    "LocalRoomStream",
    "LoginBackend",
    "OpenLogin",
    "Outbox",
    "Presence",
    "Room",
    "RoomStream",
    "Rooms",
    "State",
    "User",
]
