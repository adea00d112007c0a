"""
The network layer (the tutorial's "Network" library): framing, sessions, send
queues, fair dispatch and connection limits. It knows nothing of chat.
"""

from chatsvc.net.codec import (
    DEFAULT_MAX_PACKET_SIZE,
    HEADER,
    HEADER_SIZE,
    Packet,
    PacketDecoder,
    ProtocolError,
    encode_packet,
    pack_str,
    unpack_str,
)
from chatsvc.net.config import NetConfig
from chatsvc.net.echo import EchoFactory, RawEcho
from chatsvc.net.ratelimit import TokenBucket
from chatsvc.net.sendqueue import SendQueue
from chatsvc.net.session import Application, Session, SessionFactory
from chatsvc.net.turn import Pump

__all__ = [
    "DEFAULT_MAX_PACKET_SIZE",
    "HEADER",
    "HEADER_SIZE",
    "Application",
    "EchoFactory",
    "NetConfig",
    "Packet",
    "PacketDecoder",
    "ProtocolError",
    "Pump",
    "RawEcho",
    "SendQueue",
    "Session",
    "SessionFactory",
    "TokenBucket",
    "encode_packet",
    "pack_str",
    "unpack_str",
]
