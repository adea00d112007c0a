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
from tests.support import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent


class Twistd:
    """
    A twistd process, its log read line by line.
    """

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        twistd: list[str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.process = subprocess.Popen(
            [*(twistd or _twistd()), "-n", "--pidfile=", *args],
            cwd=cwd,
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
        records = [json.loads(line) for line in _text(path).splitlines()]
        messages = [r["message"] for r in records]
        self.assertTrue(any("starting the echo stage" in m for m in messages))
        self.assertTrue(any("listening on 127.0.0.1:" in m for m in messages))
        self.assertEqual({r["level"] for r in records}, {"info"})

    def test_chat_next_to_a_web_site(self) -> None:
        """
        The README's example: an application with its own web site adds the
        chat server in one .tac file.
        """
        web = free_port()
        twistd, port = self.run_stage(
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
        self.assertStopped(twistd)

    def test_default_log_level_is_info(self) -> None:
        """
        Without any --log-* option, debug events (an ignored packet, a
        disconnect) are not logged; --log-level debug logs them.
        """
        for args, debug in (([], False), (["--log-level", "debug"], True)):
            twistd, port = self.run_stage(["chatsvc", "--listen", self.listen(), *args])
            exchange(port, encode_packet(500, b"?") + login_request("u", "p"), 7)
            twistd.wait_for(r"Login 'u' from")
            self.assertStopped(twistd)
            log = "".join(twistd.log)
            self.assertEqual("Ignored packet id 500" in log, debug, log)
            self.assertEqual("#debug]" in log, debug, log)

    def test_redis_down_and_back_in_two_lines(self) -> None:
        """
        While Redis is down the log says so once (not once per reconnection
        attempt), a login that cannot be checked says it timed out, and
        Redis coming back is one line.
        """
        redis = RedisServer()
        self.addCleanup(redis.close)
        twistd, port = self.run_stage(
            [
                "chatsvc",
                "--listen",
                self.listen(),
                "--redis",
                redis.url,
                "--redis-timeout",
                "0.5",
            ]
        )
        twistd.wait_for(r"is down; logins fail with 33")
        self.assertEqual(
            exchange(port, login_request("u", "p"), 7), encode_packet(202, b"\x21\0")
        )
        twistd.wait_for(r"did not answer: timed out after 0\.5 s")
        time.sleep(2)
        redis.start()
        twistd.wait_for(r"is up")
        self.assertStopped(twistd)
        log = "".join(twistd.log)
        self.assertEqual(log.count(" is down"), 1)
        self.assertEqual(log.count(" is up"), 1)
        self.assertNotIn("retry", log)

    def test_open_login_on_every_interface(self) -> None:
        """
        Open login on an interface other than loopback is refused at
        start-up, and served with a warning given --open-login-anywhere.
        """
        listen = f"tcp:{free_port()}"
        self.assertStartFails(
            ["chatsvc", "--listen", listen],
            "open login on 0.0.0.0:",
            "--open-login-anywhere",
        )
        twistd = Twistd(["chatsvc", "--listen", listen, "--open-login-anywhere"])
        self.addCleanup(twistd.stop)
        twistd.wait_for(r"Open login on 0\.0\.0\.0:\d+: ANYONE")
        self.check_chat(int(listen.split(":")[1]))
        self.assertStopped(twistd)

    def assertStartFails(self, args: list[str], *expected: str) -> str:
        """
        Starting twistd with C{args} fails with exit status 1 and one line on
        standard error holding C{expected}; no usage text, no traceback.
        """
        result = subprocess.run(
            [*_twistd(), "-n", "--pidfile=", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 1, result.stderr)
        [line] = result.stderr.splitlines()
        self.assertTrue(line.startswith(f"twistd {args[0]}: "), line)
        for text in expected:
            self.assertIn(text, line)
        self.assertNotIn("Traceback", result.stdout + result.stderr)
        self.assertNotIn("Usage:", result.stdout)
        return line

    def test_bad_options(self) -> None:
        for args, expected in (
            (["--room-capacity", "abc"], ("--room-capacity", "'abc' is not a whole")),
            (["--rooms", "-2"], ("--rooms", "-2 is negative")),
            (["--chat-rate", "fast"], ("--chat-rate", "'fast' is not a number")),
            (["--listen", "tcp:notaport"], ("--listen 'tcp:notaport'", "endpoint")),
            (["--metrics", "nonsense:1"], ("--metrics 'nonsense:1'", "endpoint")),
            (["--log-level", "loud"], ("--log-level", "'loud'")),
            (["--no-such-option"], ("--no-such-option",)),
        ):
            with self.subTest(args=args):
                self.assertStartFails(["chatsvc", *args], *expected)

    def test_bad_config_file(self) -> None:
        directory = tempfile.TemporaryDirectory(prefix="chatsvc-twistd-")
        self.addCleanup(directory.cleanup)
        path = Path(directory.name) / "chatsvc.toml"
        for text, expected in (
            ("max-conections = 5\n", "unknown key 'max-conections' (did you mean"),
            ("rooms = 'ten'\n", "rooms: must be a whole number"),
            ("listen = 'tcp:x'\n", "listen 'tcp:x' is not a server endpoint"),
            ("rooms = \n", "not valid TOML"),
        ):
            with self.subTest(text=text):
                path.write_text(text)
                self.assertStartFails(
                    ["chatsvc", "--config", str(path)], f"{path}: {expected}"
                )

    def test_port_in_use(self) -> None:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            for stage in ("chatsvc-echo", "chatsvc"):
                with self.subTest(stage=stage):
                    self.assertStartFails(
                        [stage, "--listen", f"tcp:{port}:interface=127.0.0.1"],
                        f"cannot listen on tcp:{port}:interface=127.0.0.1",
                        "Address already in use",
                    )
            self.assertStartFails(
                [
                    "chatsvc",
                    "--listen",
                    self.listen(),
                    "--metrics",
                    f"tcp:{port}:interface=127.0.0.1",
                ],
                "(metrics)",
                "Address already in use",
            )
