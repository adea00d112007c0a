# -*- test-case-name: tests.test_loadtest -*-
"""
The bookkeeping that proves every notify arrived exactly once and in order.

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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


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
