"""
Tests for L{chatsvc.loadtest.procinfo}: the parsers of Linux's C{/proc} files,
and the readers on this machine.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from chatsvc.loadtest import procinfo

# /proc/PID/stat of a process whose command has a space and a parenthesis.
STAT = (
    "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 120 0 0 0"
    " 250 70 0 0 20 0 1 0 1000 1000000 100 18446744073709551615"
)
PROC_STAT = "cpu  100 20 30 4000 5 0 7 0 0 0\ncpu0 50 10 15 2000 2 0 3 0 0 0\n"
MOUNTS = """\
sysfs /sys sysfs rw,nosuid 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,memory 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0
"""
CGROUP = """\
5:memory:/user.slice
4:cpu,cpuacct:/user.slice/session-3.scope
0::/user.slice/session-3.scope
"""


STATUS = """\
Name:\ttwistd
State:\tS (sleeping)
voluntary_ctxt_switches:\t1375
nonvoluntary_ctxt_switches:\t51
"""


class ParserTests(SynchronousTestCase):
    def test_process_wakes(self) -> None:
        self.assertEqual(procinfo.parse_process_wakes(STATUS), 1375)
        self.assertRaises(ValueError, procinfo.parse_process_wakes, "Name:\tx\n")

    def test_process_ticks(self) -> None:
        self.assertEqual(procinfo.parse_process_ticks(STAT), 320)

    def test_machine_ticks(self) -> None:
        self.assertEqual(procinfo.parse_machine_ticks(PROC_STAT), 150)
        self.assertRaises(ValueError, procinfo.parse_machine_ticks, "intr 1 2 3\n")

    def test_cgroup_mount(self) -> None:
        self.assertEqual(
            procinfo.parse_cgroup_mount(MOUNTS, "cpu"),
            Path("/sys/fs/cgroup/cpu,cpuacct"),
        )
        self.assertIsNone(procinfo.parse_cgroup_mount(MOUNTS, "pids"))

    def test_cgroup_path(self) -> None:
        self.assertEqual(
            procinfo.parse_cgroup_path(CGROUP, "cpu"), "/user.slice/session-3.scope"
        )
        self.assertEqual(procinfo.parse_cgroup_path(CGROUP, "pids"), "/")


class ReaderTests(SynchronousTestCase):
    def test_unreadable_is_zero(self) -> None:
        self.patch(procinfo, "PROC", Path("/nonexistent/proc"))
        self.assertEqual(procinfo.process_cpu_seconds(os.getpid()), 0.0)
        self.assertEqual(procinfo.machine_busy_seconds(), 0.0)
        self.assertEqual(procinfo.process_wakes(os.getpid()), 0)
        self.assertRaises(OSError, procinfo.cgroup_v1, "cpu")

    def test_this_process(self) -> None:
        if not sys.platform.startswith("linux"):
            raise self.skipTest("reads Linux /proc")
        deadline = time.process_time() + 0.05
        while time.process_time() < deadline:
            pass
        self.assertGreater(procinfo.process_cpu_seconds(os.getpid()), 0.0)
        self.assertGreater(procinfo.machine_busy_seconds(), 0.0)
        wakes = procinfo.process_wakes(os.getpid())
        time.sleep(0.01)
        self.assertGreater(procinfo.process_wakes(os.getpid()), wakes)
