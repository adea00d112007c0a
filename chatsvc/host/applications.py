# -*- test-case-name: tests.test_applications,tests.integration.test_chat_tcp -*-
"""
The applications the network layer runs: packet echo and chat.

Each one only translates between sessions and a core: packets in, bytes out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from operator import itemgetter

from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatsvc.content.chat import ChatConfig, ChatServer
from chatsvc.content.login import LoginBackend
from chatsvc.net.session import Session, send_to_all
from chatsvc.protocol import (
    Packet,
    PacketId,
    ProtocolError,
    encode_packet,
    parse_request,
)

DEV_ECHO = PacketId.DEV_ECHO.value
_packet_id = itemgetter(0)


class UnknownPackets:
    """
    Counts packets with ids an application does not handle, and either
    ignores them (logged at debug level) or treats them as protocol errors.
    """

    log = Logger()

    def __init__(self, disconnect: bool = False) -> None:
        self.disconnect = disconnect
        self.counts: Counter[int] = Counter()

    def __call__(self, session: Session, packet: Packet) -> None:
        self.counts[packet.packet_id] += 1
        if self.disconnect:
            raise ProtocolError(f"unknown packet id {packet.packet_id}", "unknown-id")
        self.log.debug(
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
    L{LoginBackend}, and the server's output goes back to sessions.
    """

    log = Logger()

    def __init__(
        self,
        config: ChatConfig,
        login: LoginBackend,
        clock: Callable[[], float],
        unknown: UnknownPackets | None = None,
    ) -> None:
        self.login = login
        self.unknown = unknown if unknown is not None else UnknownPackets()
        self.server: ChatServer[Session] = ChatServer(self, config, clock=clock)

    def connected(self, session: Session) -> None:
        self.server.connect(session)

    def packets_received(self, session: Session, packets: list[Packet]) -> None:
        handle = self.server.handle
        for packet in packets:
            request = parse_request(packet.packet_id, packet.body)
            if request is None:
                self.unknown(session, packet)
            else:
                handle(session, request)
            if session.closing:
                break

    def disconnected(self, session: Session, reason: Failure) -> None:
        self.server.disconnect(session)

    def end_of_turn(self) -> None:
        """
        Deliver the room notifies of this reactor turn.
        """
        self.server.end_of_turn()

    def send(self, to: Session, data: bytes) -> None:
        to.send(data)

    def broadcast(self, to: Iterable[Session], data: bytes) -> None:
        send_to_all(to, data)

    def check_login(self, client: Session, user_id: bytes, password: bytes) -> None:
        checking = ensureDeferred(self.login.check(user_id, password))
        checking.addCallbacks(
            self._login_checked,
            self._login_failed,
            callbackArgs=(client, user_id),
            errbackArgs=(client, user_id),
        )

    def _login_checked(self, accepted: bool, client: Session, user_id: bytes) -> None:
        if accepted:
            self.log.info(
                "Login {user!r} from {peer} (session {session})",
                user=user_id.decode("utf-8", "replace"),
                peer=client.peer,
                session=client.session_id,
            )
        else:
            self.log.info(
                "Login refused for {user!r} from {peer}: unknown user or wrong"
                " password",
                user=user_id.decode("utf-8", "replace"),
                peer=client.peer,
            )
        self.server.login_checked(client, accepted)

    def _login_failed(self, failure: Failure, client: Session, user_id: bytes) -> None:
        self.log.error(
            "Login of {user!r} from {peer} failed: {backend} did not answer: {error}",
            user=user_id.decode("utf-8", "replace"),
            peer=client.peer,
            backend=self.login.description,
            error=failure.getErrorMessage() or repr(failure.value),
        )
        self.server.login_checked(client, False)
