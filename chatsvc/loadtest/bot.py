# -*- test-case-name: tests.test_loadtest -*-
"""
One load-test bot, without I/O: the client side of the protocol as a state
machine.

A L{Bot} is told what its connection did (L{Bot.receive} with the bytes that
arrived and the time) and asked for requests (L{Bot.login}, L{Bot.chat}, ...,
which return the bytes to write); L{Bot.data_to_send} hands out what it wants
written on its own (closed-loop refills). It never touches a socket or a clock,
so every rule is testable with hand-made bytes.

What it receives is checked as it arrives: every packet against the protocol
(a violation stops the bot, with the packet in the report), every chat notify
against the room's senders (L{chatsvc.loadtest.accounting}), and it is counted
(L{chatsvc.loadtest.counters}). Runs of notifies take a faster path when numpy
is installed (L{chatsvc.loadtest.fastpath}), with the same results.
"""

from __future__ import annotations

import struct
from collections import deque
from enum import Enum
from typing import Final

from chatsvc.loadtest.accounting import SentLog, SequenceTracker
from chatsvc.loadtest.counters import SIGNIFICANT_BITS, Counters, quantize_us
from chatsvc.loadtest.directory import Directory
from chatsvc.loadtest.fastpath import MIN_RUN, NotifyChecker
from chatsvc.loadtest.wire import NOTIFY_BODY, NOTIFY_SIZE, chat_message
from chatsvc.protocol import (
    HEADER,
    HEADER_SIZE,
    USER_ID_FIELD,
    Echo,
    NewUser,
    Packet,
    PacketId,
    ProtocolError,
    Response,
    UnknownPacket,
    UserLeft,
    UserList,
    chat_request,
    encode_packet,
    enter_room_request,
    leave_room_request,
    login_request,
    parse_event,
)

#: The reference client's largest packet: a server must never send more.
MAX_SERVER_PACKET: Final = 1024
ECHO_STAMP: Final = struct.Struct("<Qq")
#: The smallest DEV_ECHO packet that carries a sequence number and a time.
MIN_ECHO_SIZE: Final = HEADER_SIZE + ECHO_STAMP.size
_RUN_BYTES = MIN_RUN * NOTIFY_SIZE
_MESSAGE_START = HEADER_SIZE + USER_ID_FIELD
_CHAT_NOTIFY = int(PacketId.ROOM_CHAT_NOTIFY)
_HEX_BYTES = 48


def hex_dump(data: bytes | bytearray, limit: int = _HEX_BYTES) -> str:
    """
    Return the first C{limit} bytes as hex, noting how many more there were.
    """
    text = bytes(data[:limit]).hex(" ")
    return text + (f" ... (+{len(data) - limit} bytes)" if len(data) > limit else "")


class BotState(Enum):
    """
    Where a bot is in the login/room state machine.
    """

    CONNECTED = "connected"
    LOGGING_IN = "logging in"
    LOGGED_IN = "logged in"
    ENTERING = "entering"
    IN_ROOM = "in a room"
    LEAVING = "leaving"
    STOPPED = "stopped"


_REQUEST_NAMES: Final = {
    PacketId.LOGIN_RESPONSE: "login",
    PacketId.ROOM_ENTER_RESPONSE: "enter",
    PacketId.ROOM_LEAVE_RESPONSE: "leave",
    PacketId.ROOM_CHAT_RESPONSE: "chat",
}


class Bot:
    """
    One simulated user on one connection.

    @ivar window: with a rate of 0 (closed loop), how many chat messages or
        echoes the bot keeps in flight: each one back (its own notify, or the
        echo) lets it send the next, while C{sending} is true.
    @ivar pinned_first: the first sequence number of every other sender's
        visit, if known in advance (1 when everybody enters once and nobody
        chats before everybody is in).
    @ivar strict_existing: whether senders already in the room when this bot
        enters must be seen from their first message (nobody chatted before).
    """

    def __init__(
        self,
        index: int,
        directory: Directory,
        counters: Counters,
        log: SentLog,
        *,
        password: bytes = b"",
        room: int = 0,
        echo_size: int = 32,
        window: int = 0,
        pinned_first: int | None = None,
        strict_existing: bool = False,
        checker: NotifyChecker | None = None,
    ) -> None:
        if echo_size < MIN_ECHO_SIZE:
            raise ValueError(f"echo packets need at least {MIN_ECHO_SIZE} bytes")
        self.index = index
        self.directory = directory
        self.user_id = directory.user_id(index)
        self.password = password
        self.room = room
        self.counters = counters
        self.log = log
        self.echo_size = echo_size
        self.window = window
        self.pinned_first = pinned_first
        self.strict_existing = strict_existing
        self.checker = checker
        self.state = BotState.CONNECTED
        self.tracker = SequenceTracker()
        self.sending = False
        self.next_seq = 1
        self.visit = 0
        self.last_ok = 0
        self.in_flight = 0
        self.echoing = False
        #: how many more messages a closed-loop refill may send (None: no limit)
        self.budget: int | None = None
        self.violation: str | None = None
        self._counted_login = False
        self._counted_room = False
        self._now = 0
        self._buffer = bytearray()
        self._out: list[bytes] = []
        self._expected: deque[PacketId] = deque()
        self._chats: deque[int] = deque()
        self._login_sent = 0
        self._uids: dict[int, int | None] = {}
        self._echo_pad = b"\xa5" * (echo_size - MIN_ECHO_SIZE)

    def __repr__(self) -> str:
        return f"<Bot {self.index} {self.state.value}>"

    @property
    def answered(self) -> bool:
        """
        Whether every request sent has had its response.
        """
        return not self._expected

    # --- requests -------------------------------------------------------------

    def login(self, now_ns: int) -> bytes:
        """
        Return a LOGIN_REQUEST.
        """
        self.state = BotState.LOGGING_IN
        self._login_sent = now_ns
        self._expected.append(PacketId.LOGIN_RESPONSE)
        return login_request(self.user_id, self.password)

    def enter(self) -> bytes:
        """
        Return a ROOM_ENTER_REQUEST for the bot's room.
        """
        self.state = BotState.ENTERING
        self._expected.append(PacketId.ROOM_ENTER_RESPONSE)
        return enter_room_request(self.room)

    def leave(self) -> bytes:
        """
        Return a ROOM_LEAVE_REQUEST; the visit's last accepted message is
        recorded first (every chat response must be in).
        """
        self.finish_visit()
        self.sending = False
        self.state = BotState.LEAVING
        self._expected.append(PacketId.ROOM_LEAVE_RESPONSE)
        return leave_room_request()

    def chat(self, count: int, now_ns: int) -> bytes:
        """
        Return C{count} ROOM_CHAT_REQUESTs, stamped with C{now_ns}.
        """
        index, visit = self.index, self.visit
        seq = self.next_seq
        packets = []
        for _ in range(count):
            packets.append(chat_request(chat_message(index, seq, visit, now_ns)))
            self._chats.append(seq)
            seq += 1
        self.next_seq = seq
        if self.budget is not None:
            self.budget -= count
        self._expected.extend([PacketId.ROOM_CHAT_RESPONSE] * count)
        self.in_flight += count
        self.counters.sent += count
        return b"".join(packets)

    def connection_made(self) -> None:
        """
        A new connection opened (a churning bot reconnects with the same bot).
        """
        self.state = BotState.CONNECTED
        self._buffer = bytearray()
        self._out = []
        self._expected.clear()
        self._chats.clear()
        self._uids.clear()
        self.in_flight = 0
        self.visit = 0

    def start_echo(self) -> None:
        """
        Start counting echoes: replies must come back in order, all of them.
        """
        self.echoing = True
        self.visit = self.next_seq
        self.tracker.open(self.index, first=self.next_seq, strict=True)

    def echo(self, count: int, now_ns: int) -> bytes:
        """
        Return C{count} DEV_ECHO packets carrying their sequence number and
        C{now_ns}.
        """
        seq = self.next_seq
        pad = self._echo_pad
        packets = []
        for _ in range(count):
            packets.append(
                encode_packet(PacketId.DEV_ECHO, ECHO_STAMP.pack(seq, now_ns) + pad)
            )
            seq += 1
        self.next_seq = seq
        self.last_ok = seq - 1
        self.in_flight += count
        self.counters.sent += count
        return b"".join(packets)

    def finish_visit(self) -> None:
        """
        Record the last message of this visit the server accepted.
        """
        if self.visit and self.last_ok >= self.visit:
            self.log.finals[(self.index, self.visit)] = self.last_ok

    def data_to_send(self) -> bytes:
        """
        Return (and forget) what the bot wants written on its own.
        """
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    # --- input ----------------------------------------------------------------

    def receive(self, data: bytes, now_ns: int) -> None:
        """
        Take bytes from the server that arrived at C{now_ns}.

        A protocol violation stops the bot: C{violation} says what and which
        packet, and it is counted; the caller should close the connection.
        """
        if self.state is BotState.STOPPED:
            return
        self._now = now_ns
        buffer = self._buffer
        buffer += data
        end = len(buffer)
        offset = 0
        unpack_header = HEADER.unpack_from
        unpack_notify = NOTIFY_BODY.unpack_from
        counters = self.counters
        recording = counters.recording
        latency = counters.latency
        tracker = self.tracker
        visits = tracker.visits
        field_of = self.directory.field
        checker = self.checker
        received = 0
        try:
            while end - offset >= HEADER_SIZE:
                length, packet_id, packet_type = unpack_header(buffer, offset)
                if length < HEADER_SIZE or length > MAX_SERVER_PACKET:
                    self._violate(
                        f"packet length {length} outside {HEADER_SIZE}.."
                        f"{MAX_SERVER_PACKET}",
                        buffer[offset:],
                    )
                    return
                stop = offset + length
                if stop > end:
                    break
                if packet_id == _CHAT_NOTIFY and length == NOTIFY_SIZE:
                    if (
                        checker is not None
                        and end - offset >= _RUN_BYTES
                        and self.state in _IN_ROOM_STATES
                    ):
                        taken, own = checker.take(
                            self.tracker,
                            self.counters,
                            self.index,
                            buffer,
                            offset,
                            end,
                            now_ns,
                        )
                        if taken != offset:
                            offset = taken
                            if own:
                                self.returned(own)
                            continue
                        # Something unusual: the plain path, for this read.
                        checker = None
                    user, sender, seq, visit, sent_ns, end_byte = unpack_notify(
                        buffer, offset + HEADER_SIZE
                    )
                    start = offset + _MESSAGE_START
                    try:
                        if end_byte or buffer[start + 8 : start + 31 : 11] != b":::":
                            raise ValueError
                        sender = int(sender)
                        seq = int(seq)
                        visit = int(visit)
                        sent_ns = int(sent_ns)
                    except ValueError:
                        counters.foreign += 1
                    else:
                        if user != field_of(sender):
                            self._violate(
                                f"chat notify from bot {sender} under another user id",
                                buffer[offset:stop],
                            )
                            return
                        if self.state not in _IN_ROOM_STATES:
                            self._violate(
                                f"chat notify while {self.state.value}",
                                buffer[offset:stop],
                            )
                            return
                        received += 1
                        state = visits.get(sender)
                        if (
                            state is not None
                            and seq == state[0] + 1
                            and visit == state[1]
                        ):
                            state[0] = seq
                        else:
                            tracker.message(sender, seq, visit)
                        if recording:
                            us = (now_ns - sent_ns) // 1000
                            if us >= 2048:
                                shift = us.bit_length() - SIGNIFICANT_BITS
                                us = us >> shift << shift
                            latency[us] = latency.get(us, 0) + 1
                        if sender == self.index:
                            self.returned(1)
                else:
                    packet = Packet(
                        packet_id,
                        packet_type,
                        bytes(buffer[offset + HEADER_SIZE : stop]),
                    )
                    if not self._packet(packet, now_ns):
                        return
                offset = stop
        finally:
            counters.received += received
            if offset:
                del buffer[:offset]

    def returned(self, count: int) -> None:
        """
        C{count} of this bot's messages came back (or will not).
        """
        self.in_flight -= count
        if self.window and self.sending and self.in_flight < self.window:
            self._refill()

    def _refill(self) -> None:
        # Stamped with the arrival time of what triggered it: the clock is the
        # driver's to read.
        count = self.window - self.in_flight
        if self.budget is not None:
            count = min(count, self.budget)
        if count <= 0:
            return
        if self.echoing:
            self._out.append(self.echo(count, self._now))
        elif self.state is BotState.IN_ROOM:
            self._out.append(self.chat(count, self._now))

    def _packet(self, packet: Packet, now_ns: int) -> bool:
        """
        Handle any packet but a well-formed chat notify; return whether the
        bot goes on.
        """
        raw = packet
        try:
            event = parse_event(packet)
        except ProtocolError as e:
            self._violate(e.reason, raw.wire())
            return False
        match event:
            case Response(packet_id, result):
                return self._response(packet_id, result, now_ns, raw)
            case Echo(body):
                return self._echo_reply(body, now_ns, raw)
            case NewUser(unique_id, user_id):
                if self.state not in _IN_ROOM_STATES:
                    self._violate(
                        f"new-user notify while {self.state.value}", raw.wire()
                    )
                    return False
                self._member(unique_id, user_id, strict=True)
            case UserList(users):
                if self.state not in _IN_ROOM_STATES:
                    self._violate(
                        f"user-list notify while {self.state.value}", raw.wire()
                    )
                    return False
                for unique_id, user_id in users:
                    self._member(unique_id, user_id, strict=self.strict_existing)
            case UserLeft(unique_id):
                if self.state not in _IN_ROOM_STATES:
                    self._violate(f"leave notify while {self.state.value}", raw.wire())
                    return False
                sender = self._uids.pop(unique_id, None)
                if sender is not None:
                    self.tracker.close(sender, check_tail=True)
            case UnknownPacket():
                self._violate(f"unknown packet id {packet.packet_id}", raw.wire())
                return False
            case _:
                # A chat notify of the wrong length.
                self._violate("malformed chat notify", raw.wire())
                return False
        return True

    def _member(self, unique_id: int, user_id: bytes, *, strict: bool) -> None:
        sender = self.directory.index(user_id)
        self._uids[unique_id] = sender
        if sender is not None and sender != self.index:
            self.tracker.open(sender, first=self.pinned_first, strict=strict)

    def _response(
        self, packet_id: PacketId, result: int, now_ns: int, raw: Packet
    ) -> bool:
        expected = self._expected
        if not expected or expected[0] != packet_id:
            waiting = _REQUEST_NAMES[expected[0]] if expected else "nothing"
            self._violate(
                f"{_REQUEST_NAMES[packet_id]} response while waiting for {waiting}",
                raw.wire(),
            )
            return False
        expected.popleft()
        counters = self.counters
        if result:
            counters.result(packet_id, result)
        if packet_id == PacketId.ROOM_CHAT_RESPONSE:
            seq = self._chats.popleft()
            if result:
                self.log.rejected.setdefault(self.index, set()).add(seq)
                self.returned(1)
            else:
                self.last_ok = seq
        elif packet_id == PacketId.LOGIN_RESPONSE:
            if result:
                self.state = BotState.CONNECTED
            else:
                self.state = BotState.LOGGED_IN
                self._counted_login = True
                counters.logged_in += 1
                counters.logins += 1
                us = quantize_us((now_ns - self._login_sent) // 1000)
                counters.login_latency[us] = counters.login_latency.get(us, 0) + 1
        elif packet_id == PacketId.ROOM_ENTER_RESPONSE:
            if result:
                self.state = BotState.LOGGED_IN
            else:
                self.state = BotState.IN_ROOM
                self._counted_room = True
                counters.in_room += 1
                counters.enters += 1
                self.visit = self.next_seq
                self.last_ok = self.next_seq - 1
                self._uids.clear()
                self.tracker.open(self.index, first=self.visit, strict=True)
        elif packet_id == PacketId.ROOM_LEAVE_RESPONSE:
            if result:
                self.state = BotState.IN_ROOM
            else:
                self.state = BotState.LOGGED_IN
                self._counted_room = False
                counters.in_room -= 1
                self.tracker.close_all(check_tail=False, keep_tail_of=self.index)
                self._uids.clear()
                self.visit = 0
        return True

    def _echo_reply(self, body: bytes, now_ns: int, raw: Packet) -> bool:
        if len(body) != self.echo_size - HEADER_SIZE:
            self._violate(
                f"echo reply of {len(body) + HEADER_SIZE} bytes, sent {self.echo_size}",
                raw.wire(),
            )
            return False
        if self.in_flight <= 0:
            self._violate("echo reply to nothing sent", raw.wire())
            return False
        seq, sent_ns = ECHO_STAMP.unpack_from(body)
        counters = self.counters
        counters.received += 1
        self.tracker.message(self.index, seq, self.visit)
        if counters.recording:
            us = quantize_us((now_ns - sent_ns) // 1000)
            counters.latency[us] = counters.latency.get(us, 0) + 1
        self.returned(1)
        return True

    def _violate(self, reason: str, data: bytes | bytearray) -> None:
        length = int.from_bytes(data[:2], "little") if len(data) >= 2 else 0
        packet_id = int.from_bytes(data[2:4], "little") if len(data) >= 4 else 0
        self.violation = (
            f"bot {self.index} ({self.user_id.decode('utf-8', 'replace')},"
            f" {self.state.value}): {reason}; packet id {packet_id}, length field"
            f" {length}: {hex_dump(data)}"
        )
        self.state = BotState.STOPPED
        self.sending = False
        self.counters.violation(self.violation)

    def connection_lost(self) -> None:
        """
        The connection closed: the bot is no longer logged in or in a room.
        """
        counters = self.counters
        if self._counted_room:
            self._counted_room = False
            counters.in_room -= 1
        if self._counted_login:
            self._counted_login = False
            counters.logged_in -= 1
        if self.state is not BotState.STOPPED:
            self.state = BotState.CONNECTED
        self.sending = False
        self.tracker.close_all(check_tail=False)


# A tuple: membership by identity, without hashing the enum in Python.
_IN_ROOM_STATES: Final = (BotState.IN_ROOM, BotState.LEAVING)
