# -*- test-case-name: tests.test_loadtest -*-
"""
What the machine's kernel did to packets during a run (Linux C{/proc},
machine-wide): packets it dropped because a core's input queue was full, and
TCP segments it sent again.

A storm of thousands of packets at once over loopback can overflow a core's
input queue (C{net.core.netdev_max_backlog}, 1,000 by default); each dropped
packet then waits for TCP's retransmission timeout, 200 ms at first and
doubling, so a few drops show up as latencies of seconds that neither the
server nor the load caused. The summary reports them so that such a run is
recognised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SOFTNET_STAT = Path("/proc/net/softnet_stat")
SNMP = Path("/proc/net/snmp")


@dataclass(frozen=True, slots=True)
class NetCounters:
    """
    Machine-wide packet counters at one moment.

    @ivar dropped: packets dropped with a core's input queue full.
    @ivar retransmitted: TCP segments retransmitted.
    """

    dropped: int
    retransmitted: int

    def since(self, before: NetCounters) -> dict[str, int]:
        """
        Return what happened between C{before} and these counters.
        """
        return {
            "packets_dropped": self.dropped - before.dropped,
            "tcp_retransmitted": self.retransmitted - before.retransmitted,
        }


def parse_dropped(softnet_stat: str) -> int:
    """
    Add up the second column (packets dropped, hexadecimal) of every core's
    line of C{/proc/net/softnet_stat}.
    """
    return sum(int(line.split()[1], 16) for line in softnet_stat.splitlines() if line)


def parse_retransmitted(snmp: str) -> int:
    """
    Return C{RetransSegs} from the C{Tcp:} lines of C{/proc/net/snmp}.

    @raise ValueError: there is no such counter.
    """
    tcp = [line.split()[1:] for line in snmp.splitlines() if line.startswith("Tcp:")]
    if len(tcp) != 2:
        raise ValueError("no Tcp lines")
    names, values = tcp
    return int(values[names.index("RetransSegs")])


def read_counters() -> NetCounters | None:
    """
    Return the machine's counters now, or L{None} where they cannot be read
    (not Linux).
    """
    try:
        return NetCounters(
            parse_dropped(SOFTNET_STAT.read_text()),
            parse_retransmitted(SNMP.read_text()),
        )
    except (OSError, ValueError, IndexError):
        return None
