"""
C{bench/splice.c}: the sends of the same bytes to many sockets, copied and
spliced, end to end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.support import REQUIRE_C_HELPERS

SOURCE = Path(__file__).resolve().parent.parent / "bench" / "splice.c"


class SpliceBenchTests(SynchronousTestCase):
    def test_every_size_every_way(self) -> None:
        """
        A short run sends each size in each of the four ways and prints the
        sender's CPU per socket.
        """
        if not sys.platform.startswith("linux"):
            raise self.skipTest("tee() and splice() are Linux's")
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            message = "no C compiler to build bench/splice.c"
            if os.environ.get(REQUIRE_C_HELPERS):
                self.fail(message)
            raise self.skipTest(message)
        with tempfile.TemporaryDirectory() as directory:
            binary = str(Path(directory) / "splice")
            subprocess.run(
                [compiler, "-O2", "-pthread", "-o", binary, str(SOURCE)], check=True
            )
            result = subprocess.run(
                [binary, "3"], capture_output=True, text=True, timeout=120
            )
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.splitlines()
        self.assertTrue(lines[0].startswith("100 sockets, 3 rounds"), lines[0])
        rows = [line.split() for line in lines[3:]]
        self.assertEqual(
            [row[0] for row in rows], ["4096", "16384", "32768", "65536", "100000"]
        )
        for row in rows:
            self.assertEqual(len(row), 5, row)
            for figure in row[1:]:
                self.assertGreater(float(figure), 0.0, row)
