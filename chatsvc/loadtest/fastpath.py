# -*- test-case-name: tests.test_loadtest -*-
"""
The fast path of a bot's input: a run of chat notifies checked with numpy.

Under load a server writes each receiver hundreds of notifies at once. A run
of well-formed bot notifies is checked here as one array: headers, user ids,
the fixed-width message fields, each sender's sequence numbers and the
latencies, all at C speed. Anything unusual (a foreign message, a gap, a
repeat, a user id that does not match) makes L{NotifyChecker.take} decline or
hand that sender's messages one by one to the bot's L{SequenceTracker}, so the
results are exactly those of the plain Python path, only sooner.

numpy is optional (it comes with the C{bench} extra); without it every notify
takes the plain path.
"""

from __future__ import annotations

from typing import Any, Final

from chatsvc.loadtest.accounting import SequenceTracker
from chatsvc.loadtest.counters import Counters
from chatsvc.loadtest.directory import Directory
from chatsvc.loadtest.wire import MESSAGE_FORMAT, MESSAGE_SIZE, NOTIFY_SIZE
from chatsvc.protocol import CHAT_MSG_FIELD, USER_ID_FIELD, PacketId

try:
    import numpy as np
except ImportError:  # pragma: no cover (numpy comes with matplotlib)
    np = None  # type: ignore[assignment]

#: Fewer notifies than this go the plain way: the arrays would cost more.
MIN_RUN: Final = 16
_TEXT: Final = MESSAGE_SIZE + 1  # the message and the NUL after it
#: (first column, width) of sender, seq, visit, and the send time in two
#: halves of 9 digits (each exact in a double), in a bot message.
_NUMBERS: Final = ((0, 8), (9, 10), (20, 10), (31, 9), (40, 9))


def available() -> bool:
    """
    Whether numpy is installed.
    """
    return np is not None


class NotifyChecker:
    """
    Checks runs of notifies for the bots of one process (one checker serves
    them all: it holds the bots' user id fields as an array).

    @param first: the lowest bot index a notify may come from.
    @param count: how many bots there are (indices C{first..first+count-1}).
    """

    def __init__(self, directory: Directory, first: int, count: int) -> None:
        if np is None:
            raise RuntimeError("numpy is not installed")
        self.first = first
        self.count = count
        self._fields = np.array(
            [directory.field(first + i) for i in range(count)],
            dtype=f"S{USER_ID_FIELD}",
        )
        self._record_type = np.dtype(
            [
                ("head", "<u4"),
                ("type", "u1"),
                ("user", f"S{USER_ID_FIELD}"),
                ("text", f"V{_TEXT}"),
                ("rest", f"V{CHAT_MSG_FIELD - _TEXT}"),
            ]
        )
        assert self._record_type.itemsize == NOTIFY_SIZE
        self._head = NOTIFY_SIZE | int(PacketId.ROOM_CHAT_NOTIFY) << 16
        is_digit = np.zeros(_TEXT, dtype=bool)
        weights = np.zeros((_TEXT, len(_NUMBERS)))
        for column, (start, width) in enumerate(_NUMBERS):
            is_digit[start : start + width] = True
            weights[start : start + width, column] = 10.0 ** np.arange(
                width - 1, -1, -1
            )
        self._is_digit = is_digit
        self._others = np.flatnonzero(~is_digit)
        # The message's three colons and the NUL that ends it.
        self._other_bytes = np.frombuffer(
            bytes(MESSAGE_FORMAT % (0, 0, 0, 0) + b"\0"), np.uint8
        )[self._others]
        self._weights = weights

    def take(
        self,
        tracker: SequenceTracker,
        counters: Counters,
        own: int,
        buffer: bytearray,
        offset: int,
        end: int,
        now_ns: int,
    ) -> tuple[int, int]:
        """
        Check the notifies at C{buffer[offset:end]} for the bot of index
        C{own}, whose sequences C{tracker} follows; count them in C{counters}.

        @return: the offset after the notifies taken (C{offset} itself when
            declining: the plain path then takes the next packet), and how
            many of them are the bot's own messages.
        """
        assert np is not None
        count = (end - offset) // NOTIFY_SIZE
        if count < MIN_RUN:
            return offset, 0
        records = np.frombuffer(
            bytes(buffer[offset : offset + count * NOTIFY_SIZE]), self._record_type
        )
        headers_ok = records["head"] == self._head
        if not headers_ok.all():
            records = records[: int(headers_ok.argmin())]
            if len(records) < MIN_RUN:
                return offset, 0
        run = len(records)
        text = np.frombuffer(records["text"].tobytes(), np.uint8).reshape(run, _TEXT)
        digits = text - 48
        if (
            not ((digits <= 9) == self._is_digit).all()
            or not (text[:, self._others] == self._other_bytes).all()
        ):
            return offset, 0
        numbers = (digits @ self._weights).astype(np.int64)
        sender = numbers[:, 0]
        local = sender - self.first
        if local.min() < 0 or local.max() >= self.count:
            return offset, 0
        if not (records["user"] == self._fields[local]).all():
            return offset, 0
        self._track(tracker, sender, numbers[:, 1], numbers[:, 2])
        counters.received += run
        if counters.recording:
            sent_ns = numbers[:, 3] * 1_000_000_000 + numbers[:, 4]
            _record(counters.latency, (now_ns - sent_ns) // 1000)
        return offset + run * NOTIFY_SIZE, int(np.count_nonzero(sender == own))

    @staticmethod
    def _track(tracker: SequenceTracker, sender: Any, seq: Any, visit: Any) -> None:
        """
        Advance each sender's state, or replay its messages one by one when
        anything about them is irregular.
        """
        assert np is not None
        visits = tracker.visits
        count = len(sender)
        order = np.argsort(sender, kind="stable")
        senders = sender[order]
        seqs = seq[order]
        visit_ids = visit[order]
        change = np.empty(count, dtype=bool)
        change[0] = True
        np.not_equal(senders[1:], senders[:-1], out=change[1:])
        starts = np.flatnonzero(change)
        ends = np.empty_like(starts)
        ends[:-1] = starts[1:]
        ends[-1] = count
        # Irregular: a message that does not follow the one before it from
        # the same sender (next number, same visit).
        irregular = np.zeros(count, dtype=bool)
        irregular[1:] = (seqs[1:] - seqs[:-1] != 1) | (visit_ids[1:] != visit_ids[:-1])
        irregular &= ~change
        broken: set[int] = set()
        if irregular.any():
            group_of = np.cumsum(change) - 1
            broken = set(group_of[irregular].tolist())
        keys = senders[starts].tolist()
        firsts = seqs[starts].tolist()
        lasts = seqs[ends - 1].tolist()
        first_visits = visit_ids[starts].tolist()
        for group, key in enumerate(keys):
            state = visits.get(key)
            if (
                state is not None
                and group not in broken
                and firsts[group] == state[0] + 1
                and first_visits[group] == state[1]
            ):
                state[0] = lasts[group]
                continue
            lo, hi = int(starts[group]), int(ends[group])
            for seq_one, visit_one in zip(
                seqs[lo:hi].tolist(), visit_ids[lo:hi].tolist(), strict=True
            ):
                tracker.message(key, seq_one, visit_one)


def _record(counts: dict[int, int], micros: Any) -> None:
    """
    Add latencies (microseconds) to C{counts}, quantized as the plain path
    does (L{chatsvc.loadtest.counters.quantize_us}).
    """
    assert np is not None
    micros = np.maximum(micros, 0)
    bits = np.zeros_like(micros)
    large = micros >= 2048
    if large.any():
        bits[large] = (
            np.floor(np.log2(micros[large].astype(np.float64))).astype(np.int64) - 10
        )
    quantized = (micros >> bits) << bits
    values, numbers = np.unique(quantized, return_counts=True)
    for value, number in zip(values.tolist(), numbers.tolist(), strict=True):
        counts[value] = counts.get(value, 0) + number
