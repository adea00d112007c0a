"""
The stages as a user starts them: C{twistd -n <plugin>} and C{twistd -ny
tac/<stage>.tac} in a subprocess, checked over TCP and stopped with SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from chatsvc.content.packets import login_request
from chatsvc.net.codec import encode_packet
from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent


class Twistd:
    """
    A twistd process, its log read line by line.
    """

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [*_twistd(), "-n", "--pidfile=", *args],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.log: list[str] = []

    def wait_for(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.log.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"{pattern!r} not logged:\n{''.join(self.log)}")

    def stop(self) -> int:
        """
        SIGTERM the process; return its exit status once it shut down.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            rest, _ = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            rest, _ = self.process.communicate()
        self.log.append(rest or "")
        return self.process.returncode


def _twistd() -> list[str]:
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def exchange(port: int, data: bytes, expected: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(data)
        received = b""
        while len(received) < expected:
            chunk = s.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


class TwistdTests(SynchronousTestCase):
    def run_stage(
        self, args: list[str], env: dict[str, str] | None = None
    ) -> tuple[Twistd, int]:
        twistd = Twistd(args, env)
        self.addCleanup(twistd.stop)
        match = twistd.wait_for(r"listening on 127\.0\.0\.1:(\d+) \((\S+)\)")
        self.assertIn("Reactor", match.group(2))
        return twistd, int(match.group(1))

    def assertStopped(self, twistd: Twistd) -> None:
        """
        SIGTERM stops the stage gracefully, with exit status 0.
        """
        self.assertEqual(twistd.stop(), 0)
        self.assertIn("Main loop terminated.", "".join(twistd.log))

    def check_echo(self, port: int) -> None:
        packet = encode_packet(1, b"hello")
        self.assertEqual(exchange(port, packet, len(packet)), packet)

    def check_chat(self, port: int) -> None:
        self.assertEqual(
            exchange(port, login_request("u", "p"), 7), encode_packet(202, b"\0\0")
        )

    def listen(self) -> str:
        return f"tcp:{free_port()}:interface=127.0.0.1"

    def test_echo_plugin(self) -> None:
        twistd, port = self.run_stage(["chatsvc-echo", "--listen", self.listen()])
        self.check_echo(port)
        self.assertStopped(twistd)

    def test_sendqueue_plugin(self) -> None:
        twistd, port = self.run_stage(["chatsvc-sendqueue", "--listen", self.listen()])
        self.check_echo(port)
        self.assertStopped(twistd)

    def test_chat_plugin(self) -> None:
        twistd, port = self.run_stage(["chatsvc", "--listen", self.listen()])
        self.check_chat(port)
        self.assertStopped(twistd)

    def test_tac_files(self) -> None:
        for tac, check in (
            ("echo", self.check_echo),
            ("sendqueue", self.check_echo),
            ("chatsvc", self.check_chat),
        ):
            twistd, port = self.run_stage(
                ["-y", f"tac/{tac}.tac"], {"CHATSVC_LISTEN": self.listen()}
            )
            check(port)
            self.assertStopped(twistd)

    def test_bad_option_exits_non_zero(self) -> None:
        result = subprocess.run(
            [*_twistd(), "-n", "--pidfile=", "chatsvc", "--rooms", "lots"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("rooms", result.stdout + result.stderr)

    def test_port_in_use_exits_non_zero(self) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            result = subprocess.run(
                [
                    *_twistd(),
                    "-n",
                    "--pidfile=",
                    "chatsvc-echo",
                    "--listen",
                    f"tcp:{port}:interface=127.0.0.1",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=30,
            )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("Address already in use", result.stdout + result.stderr)
