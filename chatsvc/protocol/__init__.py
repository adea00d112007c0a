"""
The wire protocol of the edu_cpp_IOCP tutorial, without any I/O (see
C{docs/protocol.md}): framing, packet ids and result codes, the requests
clients send, the responses and notifies the server sends, and the decoding
of server packets into events. It imports nothing of Twisted.
"""

from chatsvc.protocol.events import (
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
from chatsvc.protocol.fields import (
    CHAT_MSG_FIELD,
    MAX_CHAT_MSG_SIZE,
    MAX_USER_ID_LEN,
    MAX_USER_PW_LEN,
    USER_ID_FIELD,
    USER_PW_FIELD,
    pack_str,
    unpack_str,
)
from chatsvc.protocol.framing import (
    DEFAULT_MAX_PACKET_SIZE,
    HEADER,
    HEADER_SIZE,
    MAX_WIRE_PACKET_SIZE,
    Packet,
    PacketDecoder,
    ProtocolError,
    encode_packet,
)
from chatsvc.protocol.ids import PacketId, Result
from chatsvc.protocol.requests import (
    ChatRequest,
    EnterRoomRequest,
    LeaveRoomRequest,
    LoginRequest,
    Request,
    chat_message,
    chat_request,
    enter_room_request,
    leave_room_request,
    login_request,
    parse_request,
)
from chatsvc.protocol.responses import (
    chat_notify,
    chat_notify_prefix,
    leave_user_notify,
    new_user_notify,
    result_response,
    user_list_notifies,
)

__all__ = [
    "CHAT_MSG_FIELD",
    "DEFAULT_MAX_PACKET_SIZE",
    "HEADER",
    "HEADER_SIZE",
    "MAX_CHAT_MSG_SIZE",
    "MAX_USER_ID_LEN",
    "MAX_USER_PW_LEN",
    "MAX_WIRE_PACKET_SIZE",
    "USER_ID_FIELD",
    "USER_PW_FIELD",
    "ChatNotify",
    "ChatRequest",
    "Echo",
    "EnterRoomRequest",
    "Event",
    "LeaveRoomRequest",
    "LoginRequest",
    "NewUser",
    "Packet",
    "PacketDecoder",
    "PacketId",
    "ProtocolError",
    "Request",
    "Response",
    "Result",
    "UnknownPacket",
    "UserLeft",
    "UserList",
    "chat_message",
    "chat_notify",
    "chat_notify_prefix",
    "chat_request",
    "encode_packet",
    "enter_room_request",
    "leave_room_request",
    "leave_user_notify",
    "login_request",
    "new_user_notify",
    "pack_str",
    "parse_event",
    "parse_request",
    "result_response",
    "unpack_str",
    "user_list_notifies",
]
