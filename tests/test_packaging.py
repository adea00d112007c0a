"""
The built distributions ship the twistd plugins: build the sdist and the
wheel, install the wheel into a fresh virtual environment and ask twistd.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "twisted/plugins/chatsvc_plugins.py"


class PackagingTests(SynchronousTestCase):
    def test_wheel_installs_twistd_plugins(self) -> None:
        temp = tempfile.TemporaryDirectory(prefix="chatsvc-packaging-")
        self.addCleanup(temp.cleanup)
        out = Path(temp.name)
        subprocess.run(
            [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
            check=True,
            capture_output=True,
        )
        [wheel] = out.glob("*.whl")
        [sdist] = out.glob("*.tar.gz")
        names = zipfile.ZipFile(wheel).namelist()
        self.assertIn(PLUGIN, names)
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        for page_file in ("index.html", "chat.js", "chat.css", "favicon.svg"):
            self.assertIn(f"chatsvc/web/static/{page_file}", names)
        with tarfile.open(sdist) as archive:
            self.assertTrue(any(n.endswith(PLUGIN) for n in archive.getnames()))

        env_dir = out / "venv"
        venv.create(env_dir, with_pip=True)
        bin_dir = env_dir / ("Scripts" if sys.platform == "win32" else "bin")
        subprocess.run(
            [str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)],
            check=True,
            capture_output=True,
        )
        usage = subprocess.run(
            [str(bin_dir / "twistd"), "--help"],
            check=True,
            capture_output=True,
            text=True,
            cwd=out,
        ).stdout
        for plugin in ("chatsvc-echo", "chatsvc-sendqueue", "chatsvc "):
            self.assertIn(f"    {plugin}", usage)
        self.assertTrue((bin_dir / "chatsvc-client").exists())
