"""
The built distributions and an editable install ship the twistd plugins:
build the sdist and the wheel, install the wheel into a fresh virtual
environment and start C{twistd -n chatsvc} from a directory outside the
checkout; then install the checkout in editable mode (C{pip install -e}, what
a contributor does) into the same environment and start it again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from chatsvc.protocol import encode_packet, login_request
from tests.support import REQUIRE_C_HELPERS, free_port
from tests.test_twistd import Twistd, exchange

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "twisted/plugins/chatsvc_plugins.py"
C_HELPERS = ("chatsvc.net._fanout", "chatsvc.protocol._framing")


class PackagingTests(SynchronousTestCase):
    def setUp(self) -> None:
        temp = tempfile.TemporaryDirectory(prefix="chatsvc-packaging-")
        self.addCleanup(temp.cleanup)
        self.out = Path(temp.name)
        # Outside the checkout, and nothing from the checkout on the path:
        # what the installed package provides is all twistd gets.
        self.elsewhere = self.out / "elsewhere"
        self.elsewhere.mkdir()
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def pip_install(self, bin_dir: Path, *args: str) -> None:
        result = subprocess.run(
            [str(bin_dir / "python"), "-m", "pip", "install", "-q", *args],
            capture_output=True,
            text=True,
            env=self.env,
        )
        self.assertEqual(result.returncode, 0, result.stderr)

    def output_elsewhere(self, argv: list[str]) -> str:
        """
        Run C{argv} from outside the checkout; return what it printed.
        """
        return subprocess.run(
            argv,
            check=True,
            capture_output=True,
            text=True,
            cwd=self.elsewhere,
            env=self.env,
        ).stdout

    def assertServes(self, bin_dir: Path) -> None:
        """
        C{twistd --help} lists the plugins and C{twistd -n chatsvc} starts,
        run from outside the checkout.
        """
        usage = self.output_elsewhere([str(bin_dir / "twistd"), "--help"])
        for plugin in ("chatsvc-echo", "chatsvc-sendqueue", "chatsvc "):
            self.assertIn(f"    {plugin}", usage)
        port = free_port()
        twistd = Twistd(
            ["chatsvc", "--listen", f"tcp:{port}:interface=127.0.0.1"],
            twistd=[str(bin_dir / "twistd")],
            cwd=self.elsewhere,
        )
        self.addCleanup(twistd.stop)
        twistd.wait_for(r"listening on 127\.0\.0\.1:\d+")
        self.assertEqual(
            exchange(port, login_request("u", "p"), 7), encode_packet(202, b"\0\0")
        )
        self.assertEqual(twistd.stop(), 0)

    def assertCHelpersBuilt(self, bin_dir: Path) -> None:
        """
        The C helpers were built and are found, where they must be
        (L{tests.support.REQUIRE_C_HELPERS}).
        """
        if os.name == "posix" and os.environ.get(REQUIRE_C_HELPERS):
            self.output_elsewhere(
                [str(bin_dir / "python"), "-c", f"import {', '.join(C_HELPERS)}"]
            )

    def where_chatsvc_is(self, bin_dir: Path) -> Path:
        found = self.output_elsewhere(
            [str(bin_dir / "python"), "-c", "import chatsvc; print(chatsvc.__file__)"]
        )
        return Path(found.strip()).parent

    def test_wheel_and_editable_install_serve_the_plugins(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "build", "--outdir", str(self.out), str(ROOT)],
            check=True,
            capture_output=True,
        )
        [wheel] = self.out.glob("*.whl")
        [sdist] = self.out.glob("*.tar.gz")
        names = zipfile.ZipFile(wheel).namelist()
        self.assertIn(PLUGIN, names)
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        for page_file in ("index.html", "chat.js", "chat.css", "favicon.svg"):
            self.assertIn(f"chatsvc/web/static/{page_file}", names)
        with tarfile.open(sdist) as archive:
            members = archive.getnames()
        sources = [f"{name.replace('.', '/')}.c" for name in C_HELPERS]
        for source in (PLUGIN, "setup.py", *sources):
            self.assertTrue(any(n.endswith(source) for n in members), source)

        env_dir = self.out / "venv"
        venv.create(env_dir, with_pip=True)
        bin_dir = env_dir / ("Scripts" if sys.platform == "win32" else "bin")
        self.pip_install(bin_dir, str(wheel))
        self.assertNotEqual(self.where_chatsvc_is(bin_dir), ROOT / "chatsvc")
        self.assertServes(bin_dir)
        self.assertCHelpersBuilt(bin_dir)
        self.assertTrue((bin_dir / "chatsvc-client").exists())

        self.pip_install(bin_dir, "--no-deps", "-e", str(ROOT))
        self.assertEqual(self.where_chatsvc_is(bin_dir), ROOT / "chatsvc")
        self.assertServes(bin_dir)
        self.assertCHelpersBuilt(bin_dir)
