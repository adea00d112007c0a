# -*- test-case-name: tests.test_loadtest -*-
"""
One load-test bot, without I/O: the client side of the protocol as a state
machine, and the bookkeeping that proves every notify arrived exactly once and
in order.

A L{Bot} is told what its connection did (L{Bot.receive} with the bytes that
arrived and the time) and asked for requests (L{Bot.login}, L{Bot.chat}, ...,
which return the bytes to write); L{Bot.data_to_send} hands out what it wants
written on its own (closed-loop refills). It never touches a socket or a clock,
so every rule is testable with hand-made bytes.

Every chat message a bot sends says who sent it, its sequence number (1, 2,
3... over the whole run), the sequence number of its first message since it
last entered a room (the I{visit}) and the sender's monotonic clock in
nanoseconds (see L{chatsvc.loadtest.wire}). Each receiver keeps a
L{SequenceTracker}: per sender in its room, the last sequence number seen and
the gaps. A number above the next one opens a gap (lost, unless it turns up
later: then it is I{reordered}); a number seen before is I{duplicated}. Losses
at the end of a visit (the last messages before a sender left, or before the
run ended) are found against the senders' own record of what the server
accepted (L{SentLog}), merged across processes by L{count_lost}.

Runs of notifies take a faster path when numpy is installed
(L{chatsvc.loadtest.batch}), with the same results.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from chatsvc.loadtest.batch import MIN_BATCH, NotifyBatch
from chatsvc.loadtest.wire import (
    NOTIFY_BODY,
    NOTIFY_SIZE,
    chat_message,
)
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
#: Latencies are recorded in microseconds, rounded down to 11 significant bits
#: (what an HDR histogram with 3 significant digits keeps anyway).
SIGNIFICANT_BITS: Final = 11
_BATCH_BYTES = MIN_BATCH * NOTIFY_SIZE
_MESSAGE_START = HEADER_SIZE + USER_ID_FIELD
_CHAT_NOTIFY = int(PacketId.ROOM_CHAT_NOTIFY)
_HEX_BYTES = 48


def quantize_us(value: int) -> int:
    """
    Round a latency in microseconds down to what the histogram keeps apart.
    """
    if value < 1 << SIGNIFICANT_BITS:
        return max(value, 0)
    shift = value.bit_length() - SIGNIFICANT_BITS
    return value >> shift << shift


def hex_dump(data: bytes | bytearray, limit: int = _HEX_BYTES) -> str:
    """
    Return the first C{limit} bytes as hex, noting how many more there were.
    """
    text = bytes(data[:limit]).hex(" ")
    return text + (f" ... (+{len(data) - limit} bytes)" if len(data) > limit else "")


@dataclass(slots=True)
class SentLog:
    """
    What the senders of one process know about their own messages: the last
    message of each visit the server accepted (C{finals}, by C{(sender,
    visit)}) and the messages it refused (C{rejected}, by sender), which no
    receiver can be blamed for missing.
    """

    finals: dict[tuple[int, int], int] = field(default_factory=dict)
    rejected: dict[int, set[int]] = field(default_factory=dict)

    def merge(self, other: SentLog) -> None:
        """
        Add the record of another process.
        """
        self.finals.update(other.finals)
        for sender, seqs in other.rejected.items():
            self.rejected.setdefault(sender, set()).update(seqs)


class SequenceTracker:
    """
    What one receiver saw of the senders in its room.

    L{open} starts a sender's I{visit} as this receiver sees it (the sender is
    in the room with it); L{message} takes each of its messages; L{close} ends
    the visit. A I{strict} visit must be seen from its first message (the
    sender entered after this receiver, or nobody chatted before everybody was
    in); a visit opened with C{first} knows its first sequence number before
    any message arrives. Counts: C{duplicated}, C{reordered}, C{unexpected}
    (messages from a sender that is not in the room as this receiver sees it)
    and, after the run, the C{gaps} and C{tails} that L{count_lost} turns into
    the number lost.
    """

    __slots__ = ("duplicated", "gaps", "reordered", "tails", "unexpected", "visits")

    def __init__(self) -> None:
        #: sender -> [last seq seen, first seq of the visit (0: unknown), strict]
        self.visits: dict[int, list[int]] = {}
        #: sender -> missing seq ranges [lo, hi], inclusive
        self.gaps: dict[int, list[list[int]]] = {}
        #: (sender, visit, last seq seen): to compare with the sender's final seq
        self.tails: list[tuple[int, int, int]] = []
        self.duplicated = 0
        self.reordered = 0
        self.unexpected = 0

    def open(self, sender: int, *, first: int | None = None, strict: bool) -> None:
        """
        C{sender} is in the room: its messages count from now on.
        """
        if first is None:
            self.visits[sender] = [0, 0, int(strict)]
        else:
            self.visits[sender] = [first - 1, first, 1]

    def is_open(self, sender: int) -> bool:
        """
        Whether C{sender} is in the room as this receiver sees it.
        """
        return sender in self.visits

    def message(self, sender: int, seq: int, visit: int) -> None:
        """
        Take one message of C{sender}.
        """
        state = self.visits.get(sender)
        if state is None:
            self.unexpected += 1
        elif seq == state[0] + 1 and visit == state[1]:
            state[0] = seq
        else:
            self._irregular(sender, state, seq, visit)

    def _irregular(self, sender: int, state: list[int], seq: int, visit: int) -> None:
        last, known_visit, strict = state
        if seq < visit:
            self.unexpected += 1
            return
        if known_visit == 0:
            # The first message of a visit not known in advance.
            state[1] = visit
            if strict and seq > visit:
                self._gap(sender, visit, seq - 1)
            state[0] = seq
            return
        if visit != known_visit:
            if visit < known_visit:
                # A message of an earlier visit, after this one began.
                self._old(sender, seq)
                return
            # A new visit without the leave and enter notifies in between.
            self.unexpected += 1
            self.close(sender, check_tail=True)
            self.visits[sender] = [seq, visit, 0]
            return
        if seq > last:
            self._gap(sender, last + 1, seq - 1)
            state[0] = seq
        else:
            self._old(sender, seq)

    def _gap(self, sender: int, lo: int, hi: int) -> None:
        self.gaps.setdefault(sender, []).append([lo, hi])

    def _old(self, sender: int, seq: int) -> None:
        """
        A sequence number at or below one already seen: late or repeated.
        """
        gaps = self.gaps.get(sender, [])
        for i, (lo, hi) in enumerate(gaps):
            if lo <= seq <= hi:
                self.reordered += 1
                replacement = [
                    r for r in ([lo, seq - 1], [seq + 1, hi]) if r[0] <= r[1]
                ]
                gaps[i : i + 1] = replacement
                return
        self.duplicated += 1

    def close(self, sender: int, *, check_tail: bool) -> None:
        """
        C{sender}'s visit ends; with C{check_tail}, every message it had
        accepted by then must have arrived (it left, or the run ended).
        """
        state = self.visits.pop(sender, None)
        if state is not None and check_tail and state[1]:
            self.tails.append((sender, state[1], state[0]))

    def close_all(self, *, check_tail: bool, keep_tail_of: int | None = None) -> None:
        """
        Close every visit (this receiver left, or the run ended). With
        C{keep_tail_of}, only that sender's tail is checked.
        """
        for sender in list(self.visits):
            self.close(
                sender,
                check_tail=check_tail or sender == keep_tail_of,
            )

    def missing(self) -> list[tuple[int, int, int]]:
        """
        Return the gaps as C{(sender, lo, hi)}.
        """
        return [(s, lo, hi) for s, ranges in self.gaps.items() for lo, hi in ranges]


def count_lost(
    missing: Iterable[tuple[int, int, int]],
    tails: Iterable[tuple[int, int, int]],
    log: SentLog,
) -> int:
    """
    Return how many accepted messages never arrived: the gaps (C{(sender, lo,
    hi)}) and, for every closed visit (C{(sender, visit, last seen)}), the
    messages between the last one seen and the last one the server accepted,
    not counting those the server refused.
    """
    ranges = list(missing)
    for sender, visit, last in tails:
        final = log.finals.get((sender, visit))
        if final is not None and final > last:
            ranges.append((sender, last + 1, final))
    lost = 0
    for sender, lo, hi in ranges:
        refused = log.rejected.get(sender, ())
        lost += hi - lo + 1 - sum(1 for seq in refused if lo <= seq <= hi)
    return lost


class Directory:
    """
    User ids of the bots: C{<prefix><index>}, and back.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.encode("utf-8")
        self._fields: dict[int, bytes] = {}

    def user_id(self, index: int) -> bytes:
        """
        Return the user id of bot C{index}.
        """
        return self.prefix + b"%d" % index

    def field(self, index: int) -> bytes:
        """
        Return the user id of bot C{index} as the 33-byte field of a notify.
        """
        padded = self._fields.get(index)
        if padded is None:
            padded = self._fields[index] = self.user_id(index).ljust(
                USER_ID_FIELD, b"\0"
            )
        return padded

    def index(self, user_id: bytes) -> int | None:
        """
        Return the bot index of a user id, or L{None} for somebody else.
        """
        prefix = self.prefix
        if not user_id.startswith(prefix):
            return None
        digits = user_id[len(prefix) :]
        if not digits.isdigit() or (digits[:1] == b"0" and len(digits) > 1):
            return None
        return int(digits)


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


class Counters:
    """
    What the bots of one process add up, updated in place by every bot.

    Latencies are counted in plain dicts (microseconds, quantized) and moved
    into HDR histograms once a second by L{chatsvc.loadtest.stats}: recording
    a value straight into an HDR histogram costs ten times more.
    """

    def __init__(self) -> None:
        self.connected = 0
        self.logged_in = 0
        self.in_room = 0
        self.logins = 0
        self.enters = 0
        self.cycles = 0
        self.sent = 0
        self.received = 0
        self.foreign = 0
        self.skipped = 0
        self.recording = False
        self.latency: dict[int, int] = {}
        self.login_latency: dict[int, int] = {}
        self.results: dict[tuple[int, int], int] = {}
        self.errors: dict[str, int] = {}
        self.violations: list[str] = []
        self.violation_count = 0

    def result(self, packet_id: int, code: int) -> None:
        """
        Count a response whose result is not 0.
        """
        key = (packet_id, code)
        self.results[key] = self.results.get(key, 0) + 1

    def error(self, kind: str) -> None:
        """
        Count an error of some kind (a connection failure, a timeout...).
        """
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def violation(self, text: str) -> None:
        """
        Record a protocol violation by the server (the first few in full).
        """
        self.violation_count += 1
        if len(self.violations) < 20:
            self.violations.append(text)


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
        batch: NotifyBatch | None = None,
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
        self.batch = batch
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
        batch = self.batch
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
                        batch is not None
                        and end - offset >= _BATCH_BYTES
                        and self.state in _IN_ROOM_STATES
                    ):
                        taken = batch.take(self, buffer, offset, end, now_ns)
                        if taken != offset:
                            offset = taken
                            continue
                        # Something unusual: the plain path, for this read.
                        batch = None
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
