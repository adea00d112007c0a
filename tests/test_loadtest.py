"""
Tests for L{chatsvc.loadtest} (C{chatsvc-bench}): the bots' bookkeeping of
lost, duplicated and reordered notifies, the bot state machine and its
protocol checks, the merge of results across processes, the command line, and
whole runs of every scenario against an in-process server.
"""

from __future__ import annotations

import io
import json
import os
import random
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatsvc import ChatConfig, NetConfig, RedisURL, chat_service, sendqueue_service
from chatsvc.loadtest import fastpath
from chatsvc.loadtest.accounting import SentLog, SequenceTracker, count_lost
from chatsvc.loadtest.bot import Bot, BotState
from chatsvc.loadtest.cli import build_parser, parse_args
from chatsvc.loadtest.config import RunConfig, share_bots
from chatsvc.loadtest.counters import Counters, quantize_us
from chatsvc.loadtest.directory import Directory
from chatsvc.loadtest.fastpath import NotifyChecker
from chatsvc.loadtest.network import (
    NetCounters,
    parse_dropped,
    parse_retransmitted,
)
from chatsvc.loadtest.preflight import room_hints
from chatsvc.loadtest.redis_keys import set_passwords
from chatsvc.loadtest.report import progress_line, summary_table
from chatsvc.loadtest.stats import (
    Tick,
    TimelineBuilder,
    TrackerReport,
    WorkerResult,
    drain_counts,
    encode,
    merge,
    new_histogram,
)
from chatsvc.loadtest.wire import chat_message, parse_chat_message
from chatsvc.protocol import (
    PacketId,
    Result,
    chat_notify,
    encode_packet,
    leave_user_notify,
    new_user_notify,
    result_response,
    user_list_notifies,
)
from tests.support import free_port, reactor, start_redis

LOGIN_OK = result_response(PacketId.LOGIN_RESPONSE, Result.NONE)
ENTER_OK = result_response(PacketId.ROOM_ENTER_RESPONSE, Result.NONE)
LEAVE_OK = result_response(PacketId.ROOM_LEAVE_RESPONSE, Result.NONE)
CHAT_OK = result_response(PacketId.ROOM_CHAT_RESPONSE, Result.NONE)
DIRECTORY = Directory("bench")


def notify(sender: int, seq: int, visit: int = 1, sent_ns: int = 0) -> bytes:
    """
    The notify a server sends for bot C{sender}'s message C{seq}.
    """
    return chat_notify(
        DIRECTORY.user_id(sender), chat_message(sender, seq, visit, sent_ns)
    )


# --- the receivers' bookkeeping ------------------------------------------------


class SequenceTrackerTests(SynchronousTestCase):
    """
    L{SequenceTracker} and L{count_lost} on hand-made sequences.
    """

    def tracked(
        self, seqs: list[int], *, strict: bool = True, first: int | None = 1
    ) -> SequenceTracker:
        tracker = SequenceTracker()
        tracker.open(7, first=first, strict=strict)
        for seq in seqs:
            tracker.message(7, seq, 1)
        return tracker

    def lost(self, tracker: SequenceTracker, log: SentLog | None = None) -> int:
        tracker.close_all(check_tail=True)
        return count_lost(tracker.missing(), tracker.tails, log or SentLog())

    def counts(self, tracker: SequenceTracker) -> tuple[int, int, int]:
        return tracker.duplicated, tracker.reordered, tracker.unexpected

    def test_in_order(self) -> None:
        tracker = self.tracked([1, 2, 3, 4])
        self.assertEqual(self.counts(tracker), (0, 0, 0))
        self.assertEqual(self.lost(tracker), 0)

    def test_gap_is_lost(self) -> None:
        tracker = self.tracked([1, 2, 5, 6])
        self.assertEqual(self.counts(tracker), (0, 0, 0))
        self.assertEqual(self.lost(tracker), 2)

    def test_late_message_is_reordered_not_lost(self) -> None:
        tracker = self.tracked([1, 3, 2, 4])
        self.assertEqual(self.counts(tracker), (0, 1, 0))
        self.assertEqual(self.lost(tracker), 0)

    def test_late_message_inside_a_long_gap(self) -> None:
        tracker = self.tracked([1, 6, 3])
        self.assertEqual(self.counts(tracker), (0, 1, 0))
        self.assertEqual(self.lost(tracker), 3)  # 2, 4 and 5

    def test_repeat_is_duplicated(self) -> None:
        tracker = self.tracked([1, 2, 2, 3, 1])
        self.assertEqual(self.counts(tracker), (2, 0, 0))
        self.assertEqual(self.lost(tracker), 0)

    def test_late_then_repeated(self) -> None:
        tracker = self.tracked([1, 3, 2, 2])
        self.assertEqual(self.counts(tracker), (1, 1, 0))

    def test_strict_visit_misses_its_first_messages(self) -> None:
        self.assertEqual(self.lost(self.tracked([3, 4], first=1)), 2)
        tracker = SequenceTracker()
        tracker.open(7, strict=True)
        tracker.message(7, 12, 10)  # visit 10: 10 and 11 never came
        self.assertEqual(self.lost(tracker), 2)

    def test_member_already_there_may_start_anywhere(self) -> None:
        tracker = self.tracked([40, 41], strict=False, first=None)
        self.assertEqual(self.counts(tracker), (0, 0, 0))
        self.assertEqual(self.lost(tracker), 0)

    def test_missing_tail_found_against_the_senders_final(self) -> None:
        log = SentLog(finals={(7, 1): 6})
        self.assertEqual(self.lost(self.tracked([1, 2, 3, 4]), log), 2)
        self.assertEqual(self.lost(self.tracked([1, 2, 3, 4, 5, 6]), log), 0)

    def test_nothing_received_from_a_pinned_visit(self) -> None:
        log = SentLog(finals={(7, 1): 5})
        self.assertEqual(self.lost(self.tracked([]), log), 5)

    def test_refused_messages_are_not_lost(self) -> None:
        log = SentLog(finals={(7, 1): 6}, rejected={7: {3, 6}})
        self.assertEqual(self.lost(self.tracked([1, 2, 4, 5]), log), 0)

    def test_no_tail_check_when_the_receiver_left(self) -> None:
        tracker = self.tracked([1, 2])
        tracker.close(7, check_tail=False)
        lost = count_lost(tracker.missing(), tracker.tails, SentLog(finals={(7, 1): 9}))
        self.assertEqual(lost, 0)

    def test_sender_not_in_the_room(self) -> None:
        tracker = SequenceTracker()
        tracker.message(3, 1, 1)
        self.assertEqual(self.counts(tracker), (0, 0, 1))

    def test_new_visit_without_leave_and_enter(self) -> None:
        tracker = self.tracked([1, 2])
        tracker.message(7, 9, 9)
        self.assertEqual(tracker.unexpected, 1)
        self.assertEqual(tracker.tails, [(7, 1, 2)])
        self.assertEqual(tracker.visits[7][:2], [9, 9])

    def test_message_of_an_earlier_visit(self) -> None:
        tracker = SequenceTracker()
        tracker.open(7, first=5, strict=True)
        tracker.message(7, 5, 5)
        tracker.message(7, 2, 1)
        self.assertEqual(tracker.duplicated, 1)


class WireTests(SynchronousTestCase):
    """
    The bot message text.
    """

    def test_round_trip(self) -> None:
        message = chat_message(12, 345, 300, 1_234_567_890_123)
        self.assertEqual(len(message), 49)
        self.assertEqual(parse_chat_message(message), (12, 345, 300, 1_234_567_890_123))

    def test_other_text(self) -> None:
        for text in (b"hello", b"1:2:3:4", chat_message(1, 2, 3, 4)[:-1] + b"x"):
            self.assertIsNone(parse_chat_message(text))

    def test_quantize(self) -> None:
        self.assertEqual(quantize_us(2047), 2047)
        self.assertEqual(quantize_us(2049), 2048)
        self.assertEqual(quantize_us(123_457), 123_456)
        self.assertEqual(quantize_us(-5), 0)


# --- one bot -----------------------------------------------------------------------


def new_bot(index: int = 0, **kwargs: Any) -> Bot:
    return Bot(index, DIRECTORY, Counters(), SentLog(), **kwargs)


def bot_in_room(index: int = 0, members: tuple[int, ...] = (), **kwargs: Any) -> Bot:
    """
    A bot logged in and in a room with bots C{members} (already there).
    """
    kwargs.setdefault("pinned_first", 1)
    kwargs.setdefault("strict_existing", True)
    bot = new_bot(index, **kwargs)
    bot.connection_made()
    bot.login(0)
    bot.receive(LOGIN_OK, 1000)
    bot.enter()
    bot.receive(ENTER_OK, 2000)
    users = [(100 + m, DIRECTORY.user_id(m)) for m in members]
    for packet in user_list_notifies(users):
        bot.receive(packet, 3000)
    assert bot.state is BotState.IN_ROOM and bot.violation is None, bot.violation
    return bot


class BotTests(SynchronousTestCase):
    """
    L{Bot}: requests, responses, notifies and the violations it reports.
    """

    def test_login_and_enter(self) -> None:
        bot = new_bot(3, password=b"secret")
        bot.connection_made()
        request = bot.login(5_000)
        self.assertEqual(len(request), 71)
        self.assertIn(b"bench3", request)
        self.assertIn(b"secret", request)
        bot.receive(LOGIN_OK, 2_005_000)
        self.assertIs(bot.state, BotState.LOGGED_IN)
        self.assertEqual(bot.counters.login_latency, {2000: 1})
        self.assertEqual(bot.counters.logged_in, 1)
        bot.enter()
        bot.receive(ENTER_OK, 0)
        self.assertIs(bot.state, BotState.IN_ROOM)
        bot.connection_lost()
        self.assertEqual((bot.counters.logged_in, bot.counters.in_room), (0, 0))

    def test_refused_login_is_counted(self) -> None:
        bot = new_bot()
        bot.connection_made()
        bot.login(0)
        bot.receive(
            result_response(PacketId.LOGIN_RESPONSE, Result.LOGIN_USER_INVALID_PW), 0
        )
        self.assertIs(bot.state, BotState.CONNECTED)
        self.assertEqual(bot.counters.results, {(PacketId.LOGIN_RESPONSE, 33): 1})

    def test_chat_notifies_are_tracked(self) -> None:
        bot = bot_in_room(0, members=(1,))
        bot.counters.recording = True
        request = bot.chat(2, 1_000_000)
        self.assertEqual(len(request), 2 * 262)
        bot.receive(CHAT_OK + CHAT_OK + notify(0, 1, 1, 1_000_000), 3_000_000)
        bot.receive(notify(1, 1) + notify(1, 2) + notify(0, 2, 1, 1_000_000), 3_000_000)
        self.assertEqual(bot.counters.received, 4)
        self.assertEqual(bot.in_flight, 0)
        self.assertEqual(bot.tracker.visits[1][0], 2)
        self.assertEqual(bot.counters.latency[2000], 2)
        self.assertEqual(bot.counters.sent, 2)
        bot.finish_visit()
        self.assertEqual(bot.log.finals, {(0, 1): 2})

    def test_byte_by_byte(self) -> None:
        bot = bot_in_room(0, members=(1,))
        data = notify(1, 1) + notify(1, 2) + new_user_notify(200, b"bench5")
        for i in range(len(data)):
            bot.receive(data[i : i + 1], 0)
        self.assertEqual(bot.counters.received, 2)
        self.assertTrue(bot.tracker.is_open(5))

    def test_leave_notify_closes_the_visit(self) -> None:
        bot = bot_in_room(0, members=(1,))
        bot.receive(notify(1, 1) + leave_user_notify(101), 0)
        self.assertFalse(bot.tracker.is_open(1))
        self.assertEqual(bot.tracker.tails, [(1, 1, 1)])
        bot.receive(notify(1, 2), 0)
        self.assertEqual(bot.tracker.unexpected, 1)

    def test_own_leave(self) -> None:
        bot = bot_in_room(0, members=(1,), pinned_first=None, strict_existing=False)
        bot.chat(1, 0)
        bot.receive(CHAT_OK + notify(0, 1), 0)
        bot.leave()
        bot.receive(LEAVE_OK, 0)
        self.assertIs(bot.state, BotState.LOGGED_IN)
        self.assertEqual(bot.tracker.tails, [(0, 1, 1)])
        self.assertEqual(bot.log.finals, {(0, 1): 1})
        self.assertEqual(bot.counters.in_room, 0)

    def test_closed_loop_refills(self) -> None:
        bot = bot_in_room(0)
        bot.window = 2
        bot.sending = True
        bot.chat(2, 0)
        bot.receive(CHAT_OK + CHAT_OK + notify(0, 1), 50)
        self.assertEqual(len(bot.data_to_send()), 262)
        self.assertEqual(bot.in_flight, 2)
        self.assertEqual(bot.data_to_send(), b"")

    def test_refused_chat(self) -> None:
        bot = bot_in_room(0)
        bot.chat(2, 0)
        refused = result_response(
            PacketId.ROOM_CHAT_RESPONSE, Result.ROOM_TOO_MANY_PACKET
        )
        bot.receive(CHAT_OK + refused + notify(0, 1), 0)
        self.assertEqual(bot.log.rejected, {0: {2}})
        self.assertEqual(bot.in_flight, 0)
        self.assertEqual(bot.counters.results, {(PacketId.ROOM_CHAT_RESPONSE, 63): 1})

    def test_echo(self) -> None:
        bot = new_bot(0, echo_size=40)
        bot.connection_made()
        bot.start_echo()
        bot.counters.recording = True
        data = bot.echo(3, 1_000_000)
        self.assertEqual(len(data), 120)
        bot.receive(data, 1_500_000)
        self.assertEqual(bot.counters.received, 3)
        self.assertEqual(bot.counters.latency, {500: 3})
        bot.finish_visit()
        bot.tracker.close_all(check_tail=True)
        self.assertEqual(count_lost([], bot.tracker.tails, bot.log), 0)

    def assertViolation(self, bot: Bot, *fragments: str) -> None:
        self.assertIs(bot.state, BotState.STOPPED)
        assert bot.violation is not None
        for fragment in fragments:
            self.assertIn(fragment, bot.violation)
        self.assertEqual(bot.counters.violation_count, 1)
        self.assertEqual(bot.counters.violations, [bot.violation])

    def test_login_response_of_the_wrong_length(self) -> None:
        bot = new_bot()
        bot.connection_made()
        bot.login(0)
        bot.receive(encode_packet(PacketId.LOGIN_RESPONSE, b"\0\0\0"), 0)
        self.assertViolation(bot, "202", "08 00 ca 00 00 00 00 00", "logging in")
        bot.receive(LOGIN_OK, 0)  # a stopped bot reads nothing more
        self.assertEqual(bot.counters.logins, 0)

    def test_response_nobody_asked_for(self) -> None:
        bot = bot_in_room(0)
        bot.receive(CHAT_OK, 0)
        self.assertViolation(bot, "chat response while waiting for nothing")

    def test_length_field_out_of_range(self) -> None:
        bot = new_bot()
        bot.receive(b"\x03\x00\xca\x00\x00", 0)
        self.assertViolation(bot, "packet length 3")
        bot = new_bot()
        bot.receive(b"\x01\x08\xca\x00\x00", 0)
        self.assertViolation(bot, "packet length 2049")

    def test_notify_under_another_user_id(self) -> None:
        bot = bot_in_room(0, members=(1,))
        bot.receive(chat_notify(b"mallory", chat_message(1, 1, 1, 0)), 0)
        self.assertViolation(bot, "under another user id")

    def test_notify_outside_a_room(self) -> None:
        bot = new_bot()
        bot.connection_made()
        bot.receive(notify(1, 1), 0)
        self.assertViolation(bot, "chat notify while connected")

    def test_unknown_packet(self) -> None:
        bot = new_bot()
        bot.receive(encode_packet(999, b"x"), 0)
        self.assertViolation(bot, "unknown packet id 999")

    def test_foreign_message_is_counted(self) -> None:
        bot = bot_in_room(0)
        bot.receive(chat_notify(b"alice", b"hello"), 0)
        self.assertEqual((bot.counters.foreign, bot.violation), (1, None))


class FastPathTests(SynchronousTestCase):
    """
    The numpy path gives exactly what the plain path gives.
    """

    def setUp(self) -> None:
        if not fastpath.available():
            raise self.skipTest("numpy is not installed")

    def run_both(self, stream: bytes, chunk_sizes: list[int]) -> list[Bot]:
        bots = []
        for checker in (None, NotifyChecker(DIRECTORY, 0, 20)):
            bot = bot_in_room(0, members=tuple(range(1, 12)), checker=checker)
            bot.counters.recording = True
            offset = 0
            for size in chunk_sizes:
                bot.receive(stream[offset : offset + size], 10**12)
                offset += size
            bot.receive(stream[offset:], 10**12)
            bots.append(bot)
        return bots

    def assertSame(self, plain: Bot, fast: Bot) -> None:
        self.assertEqual(plain.violation, fast.violation)
        self.assertEqual(plain.tracker.visits, fast.tracker.visits)
        self.assertEqual(plain.tracker.gaps, fast.tracker.gaps)
        for name in ("duplicated", "reordered", "unexpected"):
            self.assertEqual(getattr(plain.tracker, name), getattr(fast.tracker, name))
        self.assertEqual(plain.counters.latency, fast.counters.latency)
        self.assertEqual(plain.counters.received, fast.counters.received)
        self.assertEqual(plain.counters.foreign, fast.counters.foreign)
        self.assertEqual(plain.in_flight, fast.in_flight)

    def test_random_streams(self) -> None:
        rng = random.Random(1234)
        for _ in range(30):
            seqs = {sender: 0 for sender in range(1, 12)}
            packets = []
            for _ in range(rng.randrange(50, 400)):
                sender = rng.randrange(1, 12)
                seqs[sender] += 1
                sent_ns = 10**12 - rng.randrange(0, 10**10)
                packet = notify(sender, seqs[sender], 1, sent_ns)
                roll = rng.random()
                if roll < 0.02:
                    continue  # lost
                if roll < 0.04:
                    packets.append(packet)  # duplicated
                elif roll < 0.06 and packets:
                    packets.insert(rng.randrange(len(packets)), packet)
                    continue  # late
                elif roll < 0.07:
                    packets.append(chat_notify(b"alice", b"hi"))
                elif roll < 0.075:
                    packets.append(CHAT_OK)  # breaks the run; not asked for
                packets.append(packet)
            stream = b"".join(packets)
            sizes = [rng.choice([1, 300, 5000, 65536]) for _ in range(10)]
            plain, fast = self.run_both(stream, sizes)
            self.assertSame(plain, fast)

    def test_clean_run(self) -> None:
        stream = b"".join(notify(1 + i % 11, 1 + i // 11) for i in range(11 * 40))
        plain, fast = self.run_both(stream, [len(stream)])
        self.assertSame(plain, fast)
        self.assertEqual(fast.counters.received, 440)
        self.assertEqual(fast.tracker.gaps, {})

    def test_wrong_user_id_in_a_run(self) -> None:
        packets = [notify(1, i) for i in range(1, 40)]
        packets[20] = chat_notify(b"bench2", chat_message(1, 21, 1, 0))
        plain, fast = self.run_both(b"".join(packets), [100_000])
        self.assertSame(plain, fast)
        self.assertIn("under another user id", fast.violation or "")


# --- results -----------------------------------------------------------------------


def histogram_of(*values: int) -> str:
    counts: dict[int, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    histogram = new_histogram()
    drain_counts(counts, histogram)
    return encode(histogram)


class StatsTests(SynchronousTestCase):
    """
    Merging the results of several load processes.
    """

    def results(self) -> list[WorkerResult]:
        first = WorkerResult(worker=0, bots=2, loop="uvloop", parser="numpy")
        first.latency = histogram_of(*([1000] * 98))
        first.sent, first.received = 10, 100
        first.logins, first.enters = 2, 2
        first.window = {"seconds": 2.0, "sent": 10, "received": 100}
        first.results = {(PacketId.ROOM_CHAT_RESPONSE, 63): 2}
        first.errors = {"connect failed: [Errno 111] Connection refused": 1}
        # A receiver here saw sender 5 (in the other process) up to 3 of 4.
        first.tracker = TrackerReport(duplicated=1, tails=[(5, 1, 3)])
        second = WorkerResult(worker=1, bots=2, loop="uvloop", parser="numpy")
        second.latency = histogram_of(50_000, 90_000)
        second.sent, second.received = 5, 50
        second.logins, second.enters = 2, 1
        second.window = {"seconds": 2.1, "sent": 5, "received": 50}
        second.results = {(PacketId.ROOM_CHAT_RESPONSE, 63): 1}
        second.log = SentLog(finals={(5, 1): 4})
        return [first, second]

    def test_merge(self) -> None:
        summary = merge(
            self.results(),
            scenario="chat",
            target="127.0.0.1:1",
            config=RunConfig("chat", procs=2).to_json(),
            environment={"loop": "uvloop", "fd_limit": "1024"},
            timeline=[],
        )
        self.assertEqual(summary.latency_ms["count"], 100)
        self.assertEqual(summary.latency_ms["p50"], 1.0)
        self.assertGreater(summary.latency_ms["p99"] or 0, 49)
        self.assertEqual(summary.correctness["lost"], 1)
        self.assertEqual(summary.correctness["duplicated"], 1)
        self.assertEqual(summary.window["received"], 150)
        self.assertEqual(summary.window["received_per_s"], round(150 / 2.1, 1))
        self.assertEqual(
            summary.results,
            [
                {
                    "request": "chat",
                    "code": 63,
                    "name": "ROOM_TOO_MANY_PACKET",
                    "count": 3,
                    "description": "63 ROOM_TOO_MANY_PACKET (sending too fast;"
                    " slow down)",
                }
            ],
        )
        self.assertEqual(
            summary.failed_checks,
            [
                "1 lost",
                "1 duplicated",
                "1 of 4 bots did not enter their room",
                "3 chat requests refused: 63 ROOM_TOO_MANY_PACKET (sending too"
                " fast; slow down)",
                "1 errors",
            ],
        )
        data = json.loads(json.dumps(summary.to_json()))
        self.assertFalse(data["ok"])
        table = summary_table(summary)
        self.assertIn("chat 63 ROOM_TOO_MANY_PACKET: 3", table)
        self.assertIn("FAIL", table)

    def test_network_trouble_is_reported(self) -> None:
        """
        Packets the machine dropped during the run are in the summary, with
        what to do about them; a clean run says so too.
        """
        arguments: dict[str, Any] = {
            "scenario": "chat",
            "target": "127.0.0.1:1",
            "config": RunConfig("chat", procs=2).to_json(),
            "environment": {},
            "timeline": [],
        }
        before = NetCounters(dropped=10, retransmitted=100)
        after = NetCounters(dropped=13, retransmitted=140)
        summary = merge(self.results(), network=after.since(before), **arguments)
        self.assertEqual(
            summary.to_json()["network"],
            {"packets_dropped": 3, "tcp_retransmitted": 40},
        )
        table = summary_table(summary)
        self.assertIn("3 packets dropped, 40 TCP segments retransmitted", table)
        self.assertIn("raise net.core.netdev_max_backlog", table)
        clean = merge(self.results(), network=before.since(before), **arguments)
        self.assertIn("0 packets dropped", summary_table(clean))
        self.assertNotIn("netdev_max_backlog", summary_table(clean))
        self.assertNotIn("network", summary_table(merge(self.results(), **arguments)))

    def test_network_counters_from_proc(self) -> None:
        softnet = (
            "08512bae 00000000 00000008 00000000\n017d8297 0000024f 00000003 00000000\n"
        )
        self.assertEqual(parse_dropped(softnet), 0x24F)
        snmp = (
            "Ip: Forwarding DefaultTTL\nIp: 1 64\n"
            "Tcp: RtoAlgorithm RtoMin OutSegs RetransSegs InErrs\n"
            "Tcp: 1 200 165035203 395937 3\n"
        )
        self.assertEqual(parse_retransmitted(snmp), 395937)
        self.assertRaises(ValueError, parse_retransmitted, "Ip: 1\n")

    def test_timeline(self) -> None:
        builder = TimelineBuilder(2)
        for worker in (0, 1):
            builder.add(
                Tick(worker, 1.0, 5, 5, 5, 10, 100, 5, 0, 0, histogram_of(2000, 3000))
            )
        row = builder.row(1.0)
        self.assertEqual((row["connected"], row["received_per_s"]), (10, 200))
        self.assertEqual(row["latencies"], 4)
        self.assertIn("recv 200/s", progress_line(row, "run"))
        builder.add(Tick(0, 2.0, 5, 5, 5, 20, 300, 5, 0, 0, None))
        self.assertEqual(builder.row(2.0)["received_per_s"], 200)


# --- configuration and command line ------------------------------------------------


class ConfigTests(SynchronousTestCase):
    def test_rooms_stay_in_one_process(self) -> None:
        config = RunConfig("chat", users=40, rooms=8, procs=3)
        parts = share_bots(config)
        self.assertEqual(sorted(i for part in parts for i in part), list(range(40)))
        for part in parts:
            rooms = {config.room_of(index) for index in part}
            for other in parts:
                if other is not part:
                    self.assertFalse(rooms & {config.room_of(i) for i in other})

    def test_fewer_rooms_than_processes(self) -> None:
        parts = share_bots(RunConfig("chat", users=10, rooms=1, procs=3))
        self.assertEqual([len(part) for part in parts], [4, 3, 3])

    def test_invalid(self) -> None:
        self.assertRaises(ValueError, RunConfig, "dance")
        self.assertRaises(ValueError, RunConfig, "chat", users=2, procs=3)


class RoomHintTests(SynchronousTestCase):
    def test_fits(self) -> None:
        self.assertEqual(room_hints(RunConfig("chat", users=40, rooms=10)), [])
        self.assertEqual(room_hints(RunConfig("login", users=1000, rooms=1)), [])

    def test_more_rooms_than_the_server_has(self) -> None:
        (hint,) = room_hints(RunConfig("chat", users=40, rooms=20))
        self.assertIn("rooms 0 to 19, but the server has rooms 0 to 9", hint)
        self.assertIn("20 bots will get 61 (no such room)", hint)
        self.assertIn("--rooms 10 or fewer", hint)
        self.assertEqual(
            room_hints(RunConfig("chat", users=40, rooms=20, server_rooms=20)), []
        )

    def test_more_users_than_a_room_holds(self) -> None:
        (hint,) = room_hints(RunConfig("churn", users=50, rooms=5))
        self.assertIn("up to 10 bots share a room, but a room of the server holds 4",
                      hint)  # fmt: skip
        self.assertIn("54 (room full)", hint)
        self.assertIn("--rooms 13 or more", hint)
        self.assertIn("--room-capacity 10", hint)
        self.assertEqual(
            room_hints(RunConfig("churn", users=50, rooms=5, room_capacity=10)), []
        )
        self.assertEqual(len(room_hints(RunConfig("chat", users=200, rooms=20))), 2)


class ArgumentTests(SynchronousTestCase):
    def parse(self, *argv: str) -> RunConfig:
        return parse_args(list(argv))[1]

    def test_defaults(self) -> None:
        config = self.parse("chat")
        self.assertEqual(
            (config.host, config.port, config.users, config.rooms, config.rate),
            ("127.0.0.1", 11021, 40, 10, 1.0),
        )
        self.assertEqual((config.server_rooms, config.room_capacity), (10, 4))
        self.assertEqual((config.duration, config.window), (10.0, 1))
        self.assertEqual(room_hints(config), [])
        login = self.parse("login")
        self.assertEqual((login.duration, login.users), (0.0, 100))

    def test_options(self) -> None:
        config = self.parse(
            "churn", "--port", "7000", "--users", "8", "--rooms", "2",
            "--room-start", "5", "--rate", "0", "--window", "3", "--duration",
            "2.5", "--ramp-up", "1", "--procs", "2", "--password", "pw2",
            "--redis-key-prefix", "k:", "--no-numpy",
        )  # fmt: skip
        self.assertEqual(config.port, 7000)
        self.assertEqual(config.room_numbers, range(5, 7))
        self.assertEqual((config.rate, config.window, config.procs), (0, 3, 2))
        self.assertEqual((config.duration, config.ramp_up), (2.5, 1.0))
        self.assertFalse(config.fast_path)
        self.assertEqual(self.parse("echo", "--rate", "0", "--depth", "8").window, 8)
        config = self.parse("chat", "--server-rooms", "20", "--room-capacity", "8")
        self.assertEqual((config.server_rooms, config.room_capacity), (20, 8))

    def scenario_help(self, scenario: str) -> str:
        out = io.StringIO()
        with redirect_stdout(out), self.assertRaises(SystemExit) as raised:
            parse_args([scenario, "--help"])
        self.assertEqual(raised.exception.code, 0)
        return out.getvalue().split("\nexamples")[0]

    def test_help_explains_every_option(self) -> None:
        parser = build_parser()
        subparsers = [
            action for action in parser._actions if action.choices is not None
        ]
        for action in subparsers:
            assert isinstance(action.choices, dict)
            for scenario in action.choices.values():
                for option in scenario._actions:
                    self.assertTrue(option.help, f"{option.option_strings} no help")
        text = parser.format_help()
        for scenario in ("echo", "login", "chat", "churn", "SCENARIO --help"):
            self.assertIn(scenario, text)

    def test_each_scenario_shows_its_own_options(self) -> None:
        chat = self.scenario_help("chat")
        for option in ("--users", "--rooms", "--room-start", "--server-rooms",
                       "--room-capacity", "--rate", "--window", "--duration",
                       "--ramp-up", "--warmup", "--password", "--redis",
                       "--procs", "--no-numpy", "--json", "--plot"):  # fmt: skip
            self.assertIn(option, chat)
        self.assertNotIn("--size", chat)
        self.assertNotIn("--cycle-messages", chat)
        login = self.scenario_help("login")
        for option in ("--rate", "--window", "--rooms", "--warmup", "--size"):
            self.assertNotIn(option, login)
        self.assertIn("--redis", login)
        echo = self.scenario_help("echo")
        self.assertIn("--size", echo)
        for option in ("--password", "--rooms", "--user-prefix"):
            self.assertNotIn(option, echo)
        self.assertIn("--cycle-messages", self.scenario_help("churn"))

    def test_window_needs_a_closed_loop(self) -> None:
        err = io.StringIO()
        with redirect_stderr(err), self.assertRaises(SystemExit) as raised:
            parse_args(["chat", "--window", "4"])
        self.assertEqual(raised.exception.code, 2)
        self.assertIn("--window", err.getvalue())
        self.assertIn("only --rate 0 runs", err.getvalue())
        self.assertEqual(self.parse("chat", "--rate", "0", "--window", "4").window, 4)
        self.assertEqual(self.parse("chat", "--rate", "5", "--window", "1").window, 1)

    def test_mistakes(self) -> None:
        for argv in (
            ["chat", "--users", "0"],
            ["chat", "--rate", "-1"],
            ["chat", "--users", "2", "--procs", "3"],
            ["echo", "--size", "8"],
            ["chat", "--user-prefix", "x" * 40],
            ["chat", "--redis", "http://nope"],
            ["chat", "--rate", "2", "--window", "2"],
            ["echo", "--password", "x"],
            ["login", "--rate", "1"],
            ["dance"],
            [],
        ):
            err = io.StringIO()
            with redirect_stderr(err), self.assertRaises(SystemExit) as raised:
                parse_args(argv)
            self.assertEqual(raised.exception.code, 2, argv)
            self.assertIn("error", err.getvalue())


# --- whole runs ----------------------------------------------------------------------


class BrokenLogin(Protocol):
    """
    A server that answers a login with a response one byte too long.
    """

    def connectionMade(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= 71:
            self.received = self.received[71:]
            self.transport.write(encode_packet(PacketId.LOGIN_RESPONSE, b"\0\0\0"))  # type: ignore[union-attr]


class CommandTests(TestCase):
    """
    C{python -m chatsvc.loadtest.cli} against servers in this process.
    """

    timeout = 60

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="chatsvc-bench-test-"))

    async def start(self, service: Any) -> int:
        service.startService()
        self.addCleanup(service.stopService)
        port = await service.listener.listening
        return int(port.getHost().port)

    async def chat_server(self, **kwargs: Any) -> int:
        service = chat_service(
            "tcp:0:interface=127.0.0.1",
            NetConfig(max_connections_per_ip=0),  # every bot is on 127.0.0.1
            ChatConfig(chat_rate=0, rooms=10, room_capacity=10),
            reactor=reactor,
            **kwargs,
        )
        return await self.start(service)

    async def bench(self, *args: str) -> tuple[int, str, str, dict[str, Any] | None]:
        """
        Run chatsvc-bench; return its exit code, output, errors and JSON.
        """
        out = self.dir / f"result-{len(os.listdir(self.dir))}.json"
        argv = ["-m", "chatsvc.loadtest.cli", *args, "--json", str(out)]
        result: Deferred[tuple[bytes, bytes, int]] = getProcessOutputAndValue(
            sys.executable, argv, env=os.environ, reactor=reactor
        )
        stdout, stderr, code = await result
        data = json.loads(out.read_text()) if out.exists() else None
        return code, stdout.decode(), stderr.decode(), data

    def assertClean(self, data: dict[str, Any] | None, stdout: str) -> dict[str, Any]:
        assert data is not None, stdout
        self.assertEqual(
            {k: data["correctness"][k] for k in ("lost", "duplicated", "reordered")},
            {"lost": 0, "duplicated": 0, "reordered": 0},
            stdout,
        )
        self.assertEqual(data["errors"], {}, stdout)
        self.assertEqual(data["violations"]["count"], 0, stdout)
        self.assertTrue(data["ok"], stdout)
        return data

    async def test_chat(self) -> None:
        port = await self.chat_server()
        args = [
            "chat", "--port", str(port), "--users", "30", "--rooms", "5",
            "--room-capacity", "10", "--rate", "20", "--duration", "2",
            "--procs", "2",
            "--server-pid", str(os.getpid()),
        ]  # fmt: skip
        plot = self.dir / "chat.png"
        if fastpath.available():
            args += ["--plot", str(plot)]
        code, stdout, stderr, data = await self.bench(*args)
        self.assertEqual(code, 0, stdout + stderr)
        data = self.assertClean(data, stdout)
        counts = data["counts"]
        self.assertGreater(counts["sent"], 0)
        # Six bots a room: every message reaches six members.
        self.assertEqual(counts["received"], 6 * counts["sent"])
        self.assertGreater(data["window"]["received_per_s"], 0)
        self.assertEqual(data["logins"]["ok"], 30)
        self.assertGreater(data["latency_ms"]["count"], 0)
        self.assertIsNotNone(data["latency_ms"]["p99"])
        if sys.platform == "linux":  # read from /proc
            self.assertIn("server_pct_of_one_core", data["cpu"])
        self.assertIn("recv", stderr)  # the progress lines
        self.assertNotIn("hint", stderr)
        self.assertIn("lost", stdout)
        self.assertIn("PASS", stdout)
        if fastpath.available():
            self.assertTrue(plot.read_bytes().startswith(b"\x89PNG"))

    async def test_bots_that_cannot_enter_fail_the_run(self) -> None:
        port = await self.chat_server()
        code, stdout, stderr, data = await self.bench(
            "chat", "--port", str(port), "--users", "12", "--rooms", "12",
            "--room-capacity", "10", "--duration", "0.5", "--drain", "1", "-q",
        )  # fmt: skip
        self.assertEqual(code, 1, stdout + stderr)
        self.assertIn("hint: the bots are dealt over rooms 0 to 11", stderr)
        assert data is not None
        self.assertFalse(data["ok"])
        self.assertIn("2 of 12 bots did not enter their room", data["failed_checks"])
        self.assertIn(
            "2 enter requests refused: 61 ROOM_INVALID_INDEX (no such room)",
            data["failed_checks"],
        )
        self.assertIn("FAIL", stdout)
        self.assertIn("did not enter their room", stdout)

    async def test_churn_into_full_rooms_fails_the_run(self) -> None:
        port = await self.chat_server()
        code, stdout, stderr, data = await self.bench(
            "churn", "--port", str(port), "--users", "12", "--rooms", "1",
            "--room-capacity", "10", "--rate", "0", "--duration", "1", "-q",
        )  # fmt: skip
        self.assertEqual(code, 1, stdout + stderr)
        self.assertIn("hint: up to 12 bots share a room", stderr)
        assert data is not None
        refused = [row for row in data["results"] if row["code"] == 54]
        self.assertTrue(refused, stdout)
        self.assertIn(
            f"{refused[0]['count']} enter requests refused: 54"
            " ENTER_ROOM_FULL_USER (room is full)",
            data["failed_checks"],
        )

    async def test_churn(self) -> None:
        port = await self.chat_server()
        code, stdout, stderr, data = await self.bench(
            "churn", "--port", str(port), "--users", "12", "--rooms", "3",
            "--rate", "0", "--window", "2", "--duration", "2", "-q",
        )  # fmt: skip
        self.assertEqual(code, 0, stdout + stderr)
        data = self.assertClean(data, stdout)
        self.assertGreater(data["counts"]["cycles"], 12)
        self.assertGreater(data["counts"]["received"], 0)
        self.assertGreater(data["connections"]["ok"], 12)

    async def test_login_storm(self) -> None:
        port = await self.chat_server()
        code, stdout, stderr, data = await self.bench(
            "login", "--port", str(port), "--users", "60", "-q"
        )
        self.assertEqual(code, 0, stdout + stderr)
        data = self.assertClean(data, stdout)
        self.assertEqual(data["logins"]["ok"], 60)
        self.assertGreater(data["logins"]["per_s"], 0)
        self.assertEqual(data["latency_ms"]["count"], 60)
        self.assertIn("logins/s", stdout)

    async def test_login_with_redis(self) -> None:
        redis = start_redis(self)
        port = await self.chat_server(
            redis=RedisURL.parse(redis.url), redis_key_prefix=b"tok:"
        )
        code, stdout, stderr, data = await self.bench(
            "login", "--port", str(port), "--users", "20", "-q", "--password",
            "s3cret", "--redis", redis.url, "--redis-key-prefix", "tok:",
        )  # fmt: skip
        self.assertEqual(redis.command("GET", "tok:bench7"), b"$6\r\ns3cret\r\n")
        self.assertEqual(code, 0, stdout + stderr)
        data = self.assertClean(data, stdout)
        self.assertEqual(data["logins"]["ok"], 20)
        self.assertEqual(data["results"], [])

    async def test_echo(self) -> None:
        service = sendqueue_service("tcp:0:interface=127.0.0.1", NetConfig(), reactor)
        port = await self.start(service)
        code, stdout, stderr, data = await self.bench(
            "echo", "--port", str(port), "--users", "5", "--rate", "0",
            "--window", "4", "--size", "64", "--duration", "1.5", "-q",
        )  # fmt: skip
        self.assertEqual(code, 0, stdout + stderr)
        data = self.assertClean(data, stdout)
        self.assertGreater(data["window"]["received"], 0)
        self.assertEqual(data["counts"]["sent"], data["counts"]["received"])

    async def test_unreachable(self) -> None:
        port = free_port()
        code, _, stderr, data = await self.bench(
            "chat", "--port", str(port), "--users", "3"
        )
        self.assertEqual(code, 2)
        self.assertIn(f"cannot connect to 127.0.0.1:{port}: connection refused", stderr)
        self.assertIsNone(data)

    async def test_protocol_violation(self) -> None:
        listening = reactor.listenTCP(
            0, Factory.forProtocol(BrokenLogin), interface="127.0.0.1"
        )
        self.addCleanup(listening.stopListening)
        code, stdout, stderr, data = await self.bench(
            "chat", "--port", str(listening.getHost().port), "--users", "3",
            "--duration", "0.5", "--drain", "1", "-q",
        )  # fmt: skip
        self.assertEqual(code, 1, stdout + stderr)
        self.assertIn("protocol violation by the server", stderr)
        self.assertIn("response 202 body of 3 bytes", stderr)
        self.assertIn("08 00 ca 00 00 00 00 00", stderr)
        assert data is not None
        self.assertEqual(data["violations"]["count"], 3)
        self.assertIn("FAIL", stdout)


class RedisKeysTests(TestCase):
    async def test_set_passwords(self) -> None:
        redis = start_redis(self)
        # Blocking I/O: in a thread, so that a proxy in this reactor can work.
        count = await deferToThread(
            set_passwords,
            RedisURL.parse(redis.url),
            [b"u%d" % i for i in range(2500)],
            b"pw",
            key_prefix=b"p:",
            expire_seconds=60,
        )
        self.assertEqual(count, 2500)
        self.assertEqual(redis.command("GET", "p:u2499"), b"$2\r\npw\r\n")
        ttl = int(redis.command("TTL", "p:u0")[1:].strip())
        self.assertTrue(0 < ttl <= 60)
