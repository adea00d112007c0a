"""
C{chatsvc-bench}: the dummy-client load tester.

  - L{chatsvc.loadtest.bot}: one bot as a sans-io state machine, with
    L{chatsvc.loadtest.accounting} (every notify once and in order),
    L{chatsvc.loadtest.counters}, L{chatsvc.loadtest.directory} (user ids)
    and L{chatsvc.loadtest.fastpath} (runs of notifies checked with numpy);
  - L{chatsvc.loadtest.scenarios}: what a bot does in each scenario;
  - L{chatsvc.loadtest.link}, L{chatsvc.loadtest.worker}: bots on
    asyncio/uvloop in one load process;
  - L{chatsvc.loadtest.runner}: the parent of the load processes;
  - L{chatsvc.loadtest.fdlimit}, L{chatsvc.loadtest.preflight},
    L{chatsvc.loadtest.procinfo}, L{chatsvc.loadtest.network}: the machine
    and the server, before and during a run;
  - L{chatsvc.loadtest.stats}: HDR histograms, counters and their merge;
  - L{chatsvc.loadtest.report}: progress line, summary table and plot;
  - L{chatsvc.loadtest.cli}: the command line.

The names below are imported when first used, so that a tool that needs one
module (C{bench/} reads L{chatsvc.loadtest.procinfo}) does not load them all.
The command line is not imported here, so that C{python -m
chatsvc.loadtest.cli} runs it without a second copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatsvc._lazy import lazy_exports

if TYPE_CHECKING:
    from chatsvc.loadtest.accounting import SentLog, SequenceTracker, count_lost
    from chatsvc.loadtest.bot import Bot, BotState
    from chatsvc.loadtest.config import RunConfig, share_bots
    from chatsvc.loadtest.counters import Counters
    from chatsvc.loadtest.directory import Directory
    from chatsvc.loadtest.stats import Summary, WorkerResult, merge
    from chatsvc.loadtest.wire import chat_message, parse_chat_message

_WHERE = {
    "Bot": "chatsvc.loadtest.bot",
    "BotState": "chatsvc.loadtest.bot",
    "Counters": "chatsvc.loadtest.counters",
    "Directory": "chatsvc.loadtest.directory",
    "SentLog": "chatsvc.loadtest.accounting",
    "SequenceTracker": "chatsvc.loadtest.accounting",
    "count_lost": "chatsvc.loadtest.accounting",
    "RunConfig": "chatsvc.loadtest.config",
    "share_bots": "chatsvc.loadtest.config",
    "Summary": "chatsvc.loadtest.stats",
    "WorkerResult": "chatsvc.loadtest.stats",
    "merge": "chatsvc.loadtest.stats",
    "chat_message": "chatsvc.loadtest.wire",
    "parse_chat_message": "chatsvc.loadtest.wire",
}


__all__ = [
    "Bot",
    "BotState",
    "Counters",
    "Directory",
    "RunConfig",
    "SentLog",
    "SequenceTracker",
    "Summary",
    "WorkerResult",
    "chat_message",
    "count_lost",
    "merge",
    "parse_chat_message",
    "share_bots",
]

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
