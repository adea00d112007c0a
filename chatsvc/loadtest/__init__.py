"""
C{chatsvc-bench}: the dummy-client load tester.

  - L{chatsvc.loadtest.bot}: one bot as a sans-io state machine, and the
    bookkeeping that proves every notify arrived once and in order;
  - L{chatsvc.loadtest.scenarios}: what a bot does in each scenario;
  - L{chatsvc.loadtest.runner}: bots on asyncio/uvloop in several processes;
  - L{chatsvc.loadtest.stats}: HDR histograms, counters and their merge;
  - L{chatsvc.loadtest.report}: progress line, summary table and plot;
  - L{chatsvc.loadtest.cli}: the command line.

The command line is not imported here, so that
C{python -m chatsvc.loadtest.cli} runs it without a second copy.
"""

from chatsvc.loadtest.bot import (
    Bot,
    BotState,
    Counters,
    Directory,
    SentLog,
    SequenceTracker,
    count_lost,
)
from chatsvc.loadtest.config import RunConfig, share_bots
from chatsvc.loadtest.stats import Summary, WorkerResult, merge
from chatsvc.loadtest.wire import chat_message, parse_chat_message

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
