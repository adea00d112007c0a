# -*- test-case-name: tests.test_loadtest -*-
"""
The four scenarios, as what one bot does from start to end.

Each scenario is a coroutine over a L{Driver} (the load process: connecting,
clocks, the start barrier, the end of the run) and one L{Bot}:

  - C{echo}: connect; at the start, keep C{window} DEV_ECHO packets in flight
    (1: ping-pong), or send C{rate} a second; every echo must come back, in
    order.
  - C{login}: connect; at the start every bot logs in at once (the storm);
    then hold the connection for C{duration} seconds.
  - C{chat}: connect, log in, enter the bot's room; once every bot is in, chat
    at C{rate} messages a second (or closed loop with C{window} in flight);
    every member must get every message of its room once and in order.
  - C{churn}: over and over: connect, log in, enter, send C{cycle_messages}
    messages, wait for them to come back, leave, disconnect.

Whatever fails is counted where it happens (the driver or the bot) and ends
that bot with L{BotFailedError}; the others go on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from chatsvc.loadtest.bot import Bot, BotState
from chatsvc.loadtest.config import RunConfig
from chatsvc.loadtest.counters import Counters

#: The shortest sleep of a paced sender, and the longest (so it notices the end).
MIN_SLEEP = 0.001
MAX_SLEEP = 0.25


class BotFailedError(Exception):
    """
    This bot cannot go on; what went wrong has been counted.
    """


class Link(Protocol):
    """
    One bot's connection, as a scenario sees it.
    """

    @property
    def open(self) -> bool:
        """
        Whether the connection is still usable.
        """

    @property
    def paused(self) -> bool:
        """
        Whether the transport asked us to stop writing for now.
        """

    def send(self, data: bytes) -> None:
        """
        Write C{data}.
        """

    async def wait(self, condition: Callable[[], bool], what: str) -> None:
        """
        Return once C{condition()} holds (checked as data arrives).

        @raise BotFailedError: on the request timeout or if the connection closes.
        """

    async def drain(self, condition: Callable[[], bool]) -> bool:
        """
        Wait for C{condition()} until the end of the drain period; return
        whether it holds. Never raises.
        """

    async def close(self) -> None:
        """
        Close the connection and wait until it is closed.
        """


class Driver(Protocol):
    """
    What the load process offers its bots.
    """

    config: RunConfig
    counters: Counters

    @property
    def stopping(self) -> bool:
        """
        Whether the measured phase is over: send nothing new.
        """

    def now_ns(self) -> int:
        """
        The monotonic clock, in nanoseconds (what messages are stamped with).
        """

    def clock(self) -> float:
        """
        The event loop's clock, in seconds.
        """

    def random(self) -> float:
        """
        A random number in [0, 1).
        """

    async def sleep(self, seconds: float) -> None:
        """
        Sleep, but return early when the run stops.
        """

    async def ramp(self, bot: Bot) -> None:
        """
        Wait for this bot's turn to start (C{--ramp-up}).
        """

    async def connect(self, bot: Bot) -> Link:
        """
        Open a connection for C{bot}.

        @raise BotFailedError: if it cannot be opened.
        """

    async def ready(self, bot: Bot) -> None:
        """
        C{bot} has done its set-up; return when the measured phase starts.
        """

    async def until_stopping(self) -> None:
        """
        Return when the measured phase ends.
        """

    def answered(self, bot: Bot, now_ns: int | None) -> None:
        """
        C{bot}'s storm request was answered at C{now_ns} (L{None}: it failed).
        """


Scenario = Callable[[Driver, Bot], Awaitable[None]]


async def login(driver: Driver, link: Link, bot: Bot) -> bool:
    """
    Log in; return whether the server accepted.
    """
    link.send(bot.login(driver.now_ns()))
    await link.wait(lambda: bot.state is not BotState.LOGGING_IN, "the login response")
    return bot.state is BotState.LOGGED_IN


async def enter(link: Link, bot: Bot) -> bool:
    """
    Enter the bot's room; return whether the server accepted.
    """
    link.send(bot.enter())
    await link.wait(lambda: bot.state is not BotState.ENTERING, "the enter response")
    return bot.state is BotState.IN_ROOM


async def leave(link: Link, bot: Bot) -> bool:
    """
    Leave the room; return whether the server accepted.
    """
    link.send(bot.leave())
    await link.wait(lambda: bot.state is not BotState.LEAVING, "the leave response")
    return bot.state is BotState.LOGGED_IN


async def paced(
    driver: Driver,
    link: Link,
    make: Callable[[int, int], bytes],
    limit: int | None = None,
) -> None:
    """
    Send C{config.rate} messages a second (C{make(count, now_ns)} encodes
    them) until the run stops, the connection closes or C{limit} were sent.

    Each bot starts at a random phase, so a thousand bots at 1/s do not all
    send in the same millisecond. While the transport is paused (the server
    does not read fast enough) messages due are skipped and counted.
    """
    rate = driver.config.rate
    period = 1.0 / rate
    start = driver.clock() + driver.random() * period
    due_total = 0
    while not driver.stopping and link.open and (limit is None or due_total < limit):
        now = driver.clock()
        due = int((now - start) * rate) + 1 - due_total if now >= start else 0
        if limit is not None:
            due = min(due, limit - due_total)
        if due > 0:
            if link.paused:
                driver.counters.skipped += due
            else:
                link.send(make(due, driver.now_ns()))
            due_total += due
        wake = start + due_total * period
        await driver.sleep(min(max(wake - driver.clock(), MIN_SLEEP), MAX_SLEEP))


async def closed_loop(
    driver: Driver, link: Link, bot: Bot, make: Callable[[int, int], bytes]
) -> None:
    """
    Keep C{config.window} messages in flight until the run stops or the
    bot's budget is spent (the bot refills as its messages come back).
    """
    bot.window = driver.config.window
    bot.sending = True
    first = bot.window if bot.budget is None else min(bot.window, bot.budget)
    if first > 0:
        link.send(make(first, driver.now_ns()))
    if bot.budget is None:
        await driver.until_stopping()
    else:
        await link.wait(
            lambda: driver.stopping or (bot.budget == 0 and bot.in_flight <= 0),
            "the messages of this cycle",
        )
    bot.sending = False


async def send_messages(
    driver: Driver,
    link: Link,
    bot: Bot,
    make: Callable[[int, int], bytes],
    limit: int | None = None,
) -> None:
    """
    Send at C{config.rate}, or closed loop when the rate is 0.
    """
    if driver.config.rate > 0:
        await paced(driver, link, make, limit)
    else:
        bot.budget = limit
        try:
            await closed_loop(driver, link, bot, make)
        finally:
            bot.budget = None


async def echo_bot(driver: Driver, bot: Bot) -> None:
    """
    The C{echo} scenario.
    """
    await driver.ramp(bot)
    link = await driver.connect(bot)
    await driver.ready(bot)
    bot.start_echo()
    await send_messages(driver, link, bot, bot.echo)
    await link.drain(lambda: bot.in_flight <= 0)
    bot.finish_visit()


async def login_bot(driver: Driver, bot: Bot) -> None:
    """
    The C{login} scenario.
    """
    await driver.ramp(bot)
    link = await driver.connect(bot)
    await driver.ready(bot)
    answered_at = None
    try:
        await login(driver, link, bot)
        answered_at = driver.now_ns()
    finally:
        driver.answered(bot, answered_at)
    await driver.until_stopping()


async def chat_bot(driver: Driver, bot: Bot) -> None:
    """
    The C{chat} scenario.
    """
    await driver.ramp(bot)
    link = await driver.connect(bot)
    if not await login(driver, link, bot) or not await enter(link, bot):
        await driver.ready(bot)
        return
    await driver.ready(bot)
    await send_messages(driver, link, bot, bot.chat)
    await link.drain(lambda: bot.answered and bot.in_flight <= 0)
    bot.finish_visit()


async def churn_bot(driver: Driver, bot: Bot) -> None:
    """
    The C{churn} scenario.
    """
    await driver.ready(bot)
    await driver.ramp(bot)
    config = driver.config
    while not driver.stopping:
        try:
            await churn_cycle(driver, bot, config.cycle_messages)
        except BotFailedError:
            await driver.sleep(config.churn_pause)


async def churn_cycle(driver: Driver, bot: Bot, messages: int) -> None:
    """
    One cycle: connect, log in, enter, chat, leave, disconnect.
    """
    link = await driver.connect(bot)
    try:
        if not await login(driver, link, bot) or not await enter(link, bot):
            await driver.sleep(driver.config.churn_pause)
            return
        await send_messages(driver, link, bot, bot.chat, messages)
        done = await link.drain(lambda: bot.answered and bot.in_flight <= 0)
        if driver.stopping:
            bot.finish_visit()
            return
        if not done:
            driver.counters.error("timeout waiting for own chat messages")
            raise BotFailedError
        if await leave(link, bot):
            driver.counters.cycles += 1
    finally:
        if not driver.stopping:
            await link.close()


SCENARIO_BOTS: dict[str, Scenario] = {
    "echo": echo_bot,
    "login": login_bot,
    "chat": chat_bot,
    "churn": churn_bot,
}
