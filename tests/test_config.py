"""
Tests for L{chatsvc.host.config}: options from a TOML file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.host.options import ChatOptions, EchoOptions, SendQueueOptions

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "chatsvc.example.toml"


class ConfigFileTests(SynchronousTestCase):
    def write(self, text: str) -> str:
        directory = tempfile.TemporaryDirectory(prefix="chatsvc-config-")
        self.addCleanup(directory.cleanup)
        path = Path(directory.name) / "chatsvc.toml"
        path.write_text(text, encoding="utf-8")
        return str(path)

    def parse(self, args: list[str], options_class: type = ChatOptions) -> ChatOptions:
        options = options_class()
        options.parseOptions(args)
        return options  # type: ignore[no-any-return]

    def error(self, args: list[str]) -> str:
        with self.assertRaises(usage.UsageError) as raised:
            self.parse(args)
        return str(raised.exception)

    def test_example_file_holds_the_defaults(self) -> None:
        """
        The shipped example names every option and gives its default.
        """
        defaults = self.parse([])
        from_file = self.parse(["--config", str(EXAMPLE)])
        self.assertEqual(from_file.net, defaults.net)
        self.assertEqual(from_file.chat, defaults.chat)
        self.assertEqual(from_file.host, defaults.host)
        commented = {"redis", "metrics", "log-file", "web", "cluster", "node-id"}
        commented |= {"listen-fd", "workers"}
        documented = set(from_file.config_values) | commented
        self.assertEqual(documented, set(defaults.opts) - {"config"})

    def test_file_values_are_used(self) -> None:
        path = self.write(
            'listen = "tcp:9999"\nrooms = 3\nchat-rate = 1.5\n'
            "disconnect-unknown = true\n"
        )
        options = self.parse(["--config", path])
        self.assertEqual(options["listen"], "tcp:9999")
        self.assertEqual(options.chat.rooms, 3)
        self.assertEqual(options.chat.chat_rate, 1.5)
        self.assertTrue(options["disconnect-unknown"])

    def test_command_line_overrides(self) -> None:
        path = self.write("rooms = 3\nroom-capacity = 8\n")
        for args in (
            ["--config", path, "--rooms", "5"],
            ["--rooms=5", f"--config={path}"],
            [f"-c{path}", "--rooms", "5"],
        ):
            options = self.parse(args)
            self.assertEqual((options.chat.rooms, options.chat.room_capacity), (5, 8))

    def test_echo_stage_reads_its_keys(self) -> None:
        path = self.write("max-connections = 7\n")
        self.assertEqual(
            self.parse(["--config", path], EchoOptions).net.max_connections, 7
        )

    def test_chat_key_in_echo_stage_is_unknown(self) -> None:
        path = self.write("rooms = 3\n")
        with self.assertRaises(usage.UsageError) as raised:
            self.parse(["--config", path], SendQueueOptions)
        self.assertIn(f"{path}: unknown key 'rooms'", str(raised.exception))

    def test_unknown_key(self) -> None:
        path = self.write("max-conections = 5\n")
        message = self.error(["--config", path])
        self.assertEqual(
            message,
            f"{path}: unknown key 'max-conections' (did you mean 'max-connections'?)",
        )

    def test_wrong_types(self) -> None:
        for text, key in (
            ('rooms = "ten"\n', "rooms"),
            ("rooms = 1.5\n", "rooms"),
            ("rooms = true\n", "rooms"),
            ("listen = 11021\n", "listen"),
            ('chat-rate = "fast"\n', "chat-rate"),
            ('disconnect-unknown = "yes"\n', "disconnect-unknown"),
        ):
            path = self.write(text)
            self.assertIn(f"{path}: {key}: must be", self.error(["--config", path]))

    def test_out_of_range_from_file(self) -> None:
        path = self.write("rooms = -1\n")
        self.assertIn(f"{path}: rooms:", self.error(["--config", path]))
        path = self.write("max-connections = 0\n")
        self.assertEqual(
            self.error(["--config", path]),
            f"{path}: max-connections must be at least 1",
        )

    def test_out_of_range_from_command_line(self) -> None:
        path = self.write("max-connections = 5\n")
        self.assertEqual(
            self.error(["--config", path, "--max-connections", "0"]),
            "--max-connections must be at least 1",
        )

    def test_missing_file(self) -> None:
        self.assertIn("No such file", self.error(["--config", "/nonexistent.toml"]))

    def test_not_toml(self) -> None:
        path = self.write("rooms = = 3\n")
        self.assertIn(f"{path}: not valid TOML", self.error(["--config", path]))

    def test_config_key_itself_is_unknown(self) -> None:
        path = self.write('config = "other.toml"\n')
        self.assertIn("unknown key 'config'", self.error(["--config", path]))
