# -*- test-case-name: tests.test_applications,tests.integration.test_chat_tcp -*-
"""
The applications the network layer runs: packet echo and chat.

Each one only translates between sessions and a core: packets in, bytes out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from operator import itemgetter

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from chatsvc.cluster.chat import ClusterChat
from chatsvc.cluster.link import ClusterUnavailableError
from chatsvc.content.chat import ChatConfig, ChatServer
from chatsvc.content.login import LoginBackend
from chatsvc.net.lograte import RateLimitedLog
from chatsvc.net.session import Session, send_to_all
from chatsvc.protocol import (
    Packet,
    PacketId,
    ProtocolError,
    Result,
    chat_message,
    encode_packet,
    parse_request,
)

DEV_ECHO = PacketId.DEV_ECHO.value
ROOM_CHAT_REQUEST = PacketId.ROOM_CHAT_REQUEST.value
_packet_id = itemgetter(0)

#: Login lines per second on average, and at once: a login storm must not
#: flood the log (what is dropped is counted in the next line).
LOGIN_LOG_RATE = 10.0
LOGIN_LOG_BURST = 50

_REFUSED = {
    Result.LOGIN_USER_ALREADY: "the user is logged in already, or this"
    " connection is (or is logging in)",
    Result.LOGIN_USER_USED_ALL_OBJ: "the server is at --max-users",
    Result.LOGIN_USER_INVALID_PW: "invalid user id",
}


class UnknownPackets:
    """
    Counts packets with ids an application does not handle, and either
    ignores them (logged at debug level, rate-limited) or treats them as
    protocol errors.

    @ivar count: how many there were.
    """

    log = Logger()

    def __init__(
        self, disconnect: bool = False, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.disconnect = disconnect
        self.count = 0
        self._lines = RateLimitedLog(self.log, clock)

    def __call__(self, session: Session, packet: Packet) -> None:
        self.count += 1
        if self.disconnect:
            raise ProtocolError(f"unknown packet id {packet.packet_id}", "unknown-id")
        self._lines.emit(
            LogLevel.debug,
            "Ignored packet id {packet_id} ({size} bytes) from {peer}",
            packet_id=packet.packet_id,
            size=len(packet.body),
            peer=session.peer,
        )


class PacketEcho:
    """
    The send-queue stage: DEV_ECHO packets come back unchanged through the
    session's send queue.
    """

    def __init__(self, unknown: UnknownPackets | None = None) -> None:
        self.unknown = unknown if unknown is not None else UnknownPackets()
        self.echoed = 0
        self.echoed_bytes = 0

    def connected(self, session: Session) -> None:
        pass

    def packets_received(self, session: Session, packets: list[Packet]) -> None:
        if list(map(_packet_id, packets)).count(DEV_ECHO) == len(packets):
            # Every packet is an echo request: the answer is the batch itself.
            echo = session.batch_bytes()
            self.echoed += len(packets)
        else:
            answers = []
            for packet in packets:
                if packet.packet_id == DEV_ECHO:
                    answers.append(encode_packet(DEV_ECHO, packet.body, packet.type))
                else:
                    self.unknown(session, packet)
            self.echoed += len(answers)
            echo = b"".join(answers)
        if echo:
            self.echoed_bytes += len(echo)
            session.send(echo)

    def end_of_turn(self) -> None:
        pass

    def disconnected(self, session: Session, reason: Failure) -> None:
        pass

    def packets_out(self) -> dict[int, int]:
        """
        Packets sent, by packet id.
        """
        return {DEV_ECHO: self.echoed}

    def bytes_out(self) -> dict[int, int]:
        """
        Bytes of packets sent, by packet id.
        """
        return {DEV_ECHO: self.echoed_bytes}


class ChatApplication:
    """
    The chat stage: sessions feed a L{ChatServer}, logins go to a
    L{LoginBackend}, and the server's output goes back to sessions. Every
    login result is logged, at most L{LOGIN_LOG_RATE} lines a second of each
    kind.

    A connection has C{config.login_timeout} seconds to log in. DEV_ECHO
    packets come back as the send-queue stage sends them: the keepalive of a
    client that only listens.
    """

    log = Logger()

    def __init__(
        self,
        config: ChatConfig,
        login: LoginBackend,
        clock: Callable[[], float],
        unknown: UnknownPackets | None = None,
        cluster: ClusterChat | None = None,
    ) -> None:
        self.login = login
        self.unknown = unknown if unknown is not None else UnknownPackets()
        self.cluster = cluster
        if cluster is None:
            self.server: ChatServer[Session] = ChatServer(self, config, clock=clock)
        else:
            self.server = ChatServer(
                self,
                config,
                clock=clock,
                presence=cluster.presence,
                unique_ids=cluster.unique_ids,
                shared_rooms=cluster.rooms,
            )
            cluster.bind(self.server, _drop)
        self.login_timeout = config.login_timeout
        self.login_log = RateLimitedLog(
            self.log, clock, rate=LOGIN_LOG_RATE, burst=LOGIN_LOG_BURST
        )

    def connected(self, session: Session) -> None:
        self.server.connect(session)
        session.set_deadline(self.login_timeout, "log in")

    def packets_received(self, session: Session, packets: list[Packet]) -> None:
        server = self.server
        chats: list[bytes] = []
        try:
            for packet in packets:
                packet_id, packet_type, body = packet
                if packet_id == ROOM_CHAT_REQUEST:
                    chats.append(chat_message(body))
                    continue
                if chats:
                    server.chats(session, chats)
                    chats = []
                    if session.closing:
                        return
                if (request := parse_request(packet_id, body)) is not None:
                    server.handle(session, request)
                elif packet_id == DEV_ECHO:
                    echo = encode_packet(DEV_ECHO, body, packet_type)
                    server.stats.sent(PacketId.DEV_ECHO, len(echo))
                    session.send(echo)
                else:
                    self.unknown(session, packet)
                if session.closing:
                    return
        finally:
            # What came before a packet that breaks the protocol is applied.
            if chats and not session.closing:
                server.chats(session, chats)

    def disconnected(self, session: Session, reason: Failure) -> None:
        self.server.disconnect(session)

    def end_of_turn(self) -> None:
        """
        Deliver the room notifies of this reactor turn.
        """
        self.server.end_of_turn()

    # The chat rules' handles are the sessions: what they send goes straight
    # to them, without a call of this application's in between.
    send = staticmethod(Session.send)
    broadcast = staticmethod(send_to_all)

    def check_login(self, client: Session, user_id: bytes, password: bytes) -> None:
        checking = ensureDeferred(self._check_login(user_id, password))
        checking.addCallbacks(
            self._login_checked,
            self._login_failed,
            callbackArgs=(client, user_id),
            errbackArgs=(client, user_id),
        )

    def login_refused(self, client: Session, user_id: bytes, result: Result) -> None:
        self.login_log.emit(
            LogLevel.info,
            "Login refused ({result}) for {user!r} from {peer}: {reason}",
            result=int(result),
            user=user_id.decode("utf-8", "replace"),
            peer=client.peer,
            reason=_REFUSED.get(result, result.name),
        )

    async def _check_login(self, user_id: bytes, password: bytes) -> Result:
        if not await self.login.check(user_id, password):
            return Result.LOGIN_USER_INVALID_PW
        if self.cluster is not None:
            return await self.cluster.admit(user_id)
        return Result.NONE

    def _login_checked(self, result: Result, client: Session, user_id: bytes) -> None:
        if result is Result.LOGIN_USER_ALREADY:
            self.login_log.emit(
                LogLevel.info,
                "Login refused (31) for {user!r} from {peer}: logged in on another"
                " node",
                user=user_id.decode("utf-8", "replace"),
                peer=client.peer,
            )
            self.server.login_checked(client, False, result)
            return
        accepted = result is Result.NONE
        if accepted:
            self.login_log.emit(
                LogLevel.info,
                "Login {user!r} from {peer} (session {session})",
                user=user_id.decode("utf-8", "replace"),
                peer=client.peer,
                session=client.session_id,
            )
        else:
            self.login_log.emit(
                LogLevel.info,
                "Login refused (33) for {user!r} from {peer}: unknown user or wrong"
                " password",
                user=user_id.decode("utf-8", "replace"),
                peer=client.peer,
            )
        self.server.login_checked(client, accepted)
        if accepted:
            client.clear_deadline()

    def _login_failed(self, failure: Failure, client: Session, user_id: bytes) -> None:
        backend = self.login.description
        if self.cluster is not None and failure.check(ClusterUnavailableError):
            backend = self.cluster.node.link.description
        self.login_log.emit(
            LogLevel.error,
            "Login of {user!r} from {peer} failed: {backend} did not answer: {error}",
            user=user_id.decode("utf-8", "replace"),
            peer=client.peer,
            backend=backend,
            error=failure.getErrorMessage() or repr(failure.value),
        )
        self.server.login_checked(client, False)


def _drop(session: Session) -> None:
    session.close("the cluster no longer counts this user as logged in here")
