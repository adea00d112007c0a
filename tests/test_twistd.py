"""
The stages as a user starts them: C{twistd -n <plugin>} and C{twistd -ny
tac/<stage>.tac} in a subprocess, checked over TCP and stopped with SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from chatsvc.protocol import (
    ChatNotify,
    Packet,
    PacketDecoder,
    PacketId,
    Response,
    chat_request,
    encode_packet,
    enter_room_request,
    login_request,
    parse_event,
)
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


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def read_until_closed(connection: socket.socket) -> bytes:
    received = bytearray()
    with connection:
        connection.settimeout(20)
        while chunk := connection.recv(65536):
            received += chunk
    return bytes(received)


def decode_all(data: bytes) -> list[Packet]:
    decoder = PacketDecoder()
    decoder.feed(data)
    packets = []
    while (packet := decoder.next_packet()) is not None:
        packets.append(packet)
    return packets


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

    def test_chat_plugin_on_chatsvc_epoll(self) -> None:
        """
        C{--reactor=chatsvc-epoll} runs the chat stage on
        L{chatsvc.net.reactor.EPollReactor}.
        """
        twistd, port = self.run_stage(
            ["--reactor=chatsvc-epoll", "chatsvc", "--listen", self.listen()]
        )
        self.assertIn("chatsvc.net.reactor.EPollReactor", "".join(twistd.log))
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

    def test_sigterm_during_chat_delivers_what_was_accepted(self) -> None:
        """
        SIGTERM in the middle of a chat run: every notify the server accepted
        (its sender got ROOM_CHAT_RESPONSE 0) reaches every member, the
        connections close, and twistd exits with status 0.
        """
        twistd, port = self.run_stage(
            ["chatsvc", "--listen", self.listen(), "--chat-rate", "0"]
        )
        members = [socket.create_connection(("127.0.0.1", port), 5) for _ in range(3)]
        for i, member in enumerate(members):
            member.sendall(login_request(f"user{i}", "pw") + enter_room_request(0))
        time.sleep(0.5)
        for n in range(300):
            for i, member in enumerate(members):
                member.sendall(chat_request(f"{i}:{n}"))
        twistd.process.send_signal(signal.SIGTERM)
        streams = [read_until_closed(member) for member in members]
        self.assertEqual(twistd.process.wait(20), 0)
        twistd.stop()
        notifies = []
        for stream in streams:
            events = [parse_event(p) for p in decode_all(stream)]
            accepted = sum(
                1 for e in events if e == Response(PacketId.ROOM_CHAT_RESPONSE, 0)
            )
            messages = [e.message for e in events if isinstance(e, ChatNotify)]
            notifies.append((accepted, messages))
        self.assertTrue(all(messages == notifies[0][1] for _, messages in notifies))
        for i, (accepted, _) in enumerate(notifies):
            mine = [m for m in notifies[0][1] if m.startswith(b"%d:" % i)]
            self.assertEqual(mine, [b"%d:%d" % (i, n) for n in range(accepted)])
        self.assertIn("chatsvc chat stopped", "".join(twistd.log))

    def test_json_log_file(self) -> None:
        directory = tempfile.TemporaryDirectory(prefix="chatsvc-twistd-")
        self.addCleanup(directory.cleanup)
        path = Path(directory.name) / "chatsvc.json"
        twistd = Twistd(
            [
                "chatsvc-echo",
                "--listen",
                self.listen(),
                "--log-format",
                "json",
                "--log-file",
                str(path),
            ]
        )
        self.addCleanup(twistd.stop)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "listening on" not in _text(path):
            time.sleep(0.1)
        self.assertEqual(twistd.stop(), 0)
        records = [json.loads(r) for r in _text(path).split("\x1e") if r.strip()]
        formats = [r.get("log_format", "") for r in records]
        self.assertTrue(any("starting the {stage} stage" in f for f in formats))
        self.assertTrue(any("listening on" in f for f in formats))

    def test_chat_next_to_a_web_site(self) -> None:
        """
        The README's example: an application with its own web site adds the
        chat server in one .tac file.
        """
        web = free_port()
        _, port = self.run_stage(
            ["-y", "tac/chat-and-web.tac"],
            {
                "CHATSVC_LISTEN": self.listen(),
                "WEB_LISTEN": f"tcp:{web}:interface=127.0.0.1",
            },
        )
        self.check_chat(port)
        request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        page = exchange(web, request, 10**6)
        self.assertIn(b"200 OK", page)
        self.assertIn(b"hello from the game's web site", page)

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
