"""
C{bench/wakeup.py}: the CPU per wake-up of each event loop, end to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "wakeup.py"


class WakeupBenchTests(SynchronousTestCase):
    def test_runs_every_loop(self) -> None:
        """
        A short run measures each loop, with the sender on either core.
        """
        if not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2:
            raise self.skipTest("needs Linux and two cores")
        result = subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                "--seconds",
                "0.3",
                "--rate",
                "200",
                "--rounds",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.splitlines()[1:]
        loops = ["epoll", "uvloop", "twisted", "chatsvc-epoll"]
        if find_spec("uvloop") is None:
            self.assertEqual(
                lines.pop(), "uvloop        not installed (pip install '.[bench]')"
            )
            loops.remove("uvloop")
        rows = [line.split() for line in lines]
        self.assertEqual(
            [(row[0], row[1]) for row in rows],
            [(loop, where) for loop in loops for where in ("same", "other")],
        )
        for row in rows:
            self.assertGreater(int(row[3].replace(",", "")), 20, row)
            self.assertGreater(float(row[4]), 0.0, row)
