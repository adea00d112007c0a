"""
Tests for L{chatsvc.host.logs}: formats, files, rotation and levels.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from pathlib import Path
from unittest import mock

from twisted.logger import Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.host import logs
from chatsvc.host.logs import LogSettings, make_observer, parse_levels, use_with_twistd


class LevelTests(SynchronousTestCase):
    def test_parse(self) -> None:
        self.assertEqual(
            parse_levels("warn, chatsvc.net=debug,chatsvc.content=ERROR"),
            (
                ("", LogLevel.warn),
                ("chatsvc.net", LogLevel.debug),
                ("chatsvc.content", LogLevel.error),
            ),
        )

    def test_unknown_level(self) -> None:
        with self.assertRaises(ValueError) as raised:
            parse_levels("chatsvc.net=loud")
        self.assertIn("'loud' is not one of", str(raised.exception))


class ObserverTests(SynchronousTestCase):
    def emit(self, settings: LogSettings, stdout: io.StringIO | None = None) -> None:
        observer = make_observer(settings, stdout)
        for namespace in ("chatsvc.net.session", "chatsvc.content.chat"):
            log = Logger(namespace=namespace, observer=observer)
            log.debug("{ns} debug", ns=namespace)
            log.info("{ns} info", ns=namespace)
            log.warn("{ns} warn", ns=namespace)

    def test_text_to_stdout_with_levels(self) -> None:
        out = io.StringIO()
        self.emit(LogSettings(levels=parse_levels("warn,chatsvc.net=debug")), out)
        lines = out.getvalue()
        self.assertIn("chatsvc.net.session debug", lines)
        self.assertIn("chatsvc.net.session info", lines)
        self.assertNotIn("chatsvc.content.chat info", lines)
        self.assertIn("chatsvc.content.chat warn", lines)

    def test_json_file(self) -> None:
        directory = tempfile.TemporaryDirectory(prefix="chatsvc-logs-")
        self.addCleanup(directory.cleanup)
        path = Path(directory.name) / "chatsvc.json"
        self.emit(LogSettings(format="json", file=str(path)))
        records = [
            json.loads(line) for line in path.read_text().split("\x1e") if line.strip()
        ]
        self.assertEqual(
            [r["log_format"] for r in records],
            ["{ns} info", "{ns} warn", "{ns} info", "{ns} warn"],
        )

    def test_rotation_by_size(self) -> None:
        directory = tempfile.TemporaryDirectory(prefix="chatsvc-logs-")
        self.addCleanup(directory.cleanup)
        path = Path(directory.name) / "chatsvc.log"
        observer = make_observer(LogSettings(file=str(path), max_size=2048, backups=2))
        log = Logger(observer=observer)
        for i in range(200):
            log.info("line {i} " + "x" * 50, i=i)
        names = sorted(p.name for p in Path(directory.name).iterdir())
        self.assertEqual(names, ["chatsvc.log", "chatsvc.log.1", "chatsvc.log.2"])
        self.assertLessEqual(path.stat().st_size, 2048 + 200)

    def test_bad_settings(self) -> None:
        self.assertRaises(ValueError, LogSettings, format="xml")
        self.assertRaises(ValueError, LogSettings, max_size=10)
        if sys.platform != "win32":
            self.assertRaises(ValueError, LogSettings, eventlog=True)

    def test_twistd_gets_our_observer(self) -> None:
        twistd = {"logger": None}
        use_with_twistd(LogSettings(format="json"), twistd)
        self.assertEqual(twistd["logger"], "chatsvc.host.logs.twistd_observer")

    def test_twistd_logger_option_wins(self) -> None:
        twistd = {"logger": "my.observer"}
        use_with_twistd(LogSettings(format="json"), twistd)
        self.assertEqual(twistd["logger"], "my.observer")

    def test_outside_twistd_nothing_changes(self) -> None:
        """
        Outside twistd the settings are not kept for twistd's observer.
        """
        settings = LogSettings(format="json", max_size=123_457)
        use_with_twistd(settings, None)
        self.assertNotIn(settings, logs._twistd_settings)


class FakeEventLog:
    """
    The two pywin32 modules L{EventLogObserver} uses, recording its calls;
    registering the source fails as it does without administrator rights.
    """

    EVENTLOG_INFORMATION_TYPE = 4
    EVENTLOG_WARNING_TYPE = 2
    EVENTLOG_ERROR_TYPE = 1

    def __init__(self) -> None:
        self.reported: list[tuple[str, int, list[str]]] = []
        self.fail_reports = False

    def AddSourceToRegistry(self, source: str) -> None:
        raise PermissionError("access denied")

    def ReportEvent(
        self, source: str, event_id: int, eventType: int, strings: list[str]
    ) -> None:
        if self.fail_reports:
            raise OSError("the event log is full")
        self.reported.append((source, eventType, strings))


class EventLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fake = FakeEventLog()
        modules = mock.patch.dict(
            sys.modules, {"win32evtlog": self.fake, "win32evtlogutil": self.fake}
        )
        modules.start()
        self.addCleanup(modules.stop)
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)

    def test_unregistered_source_still_logs(self) -> None:
        """
        Registering the source needs administrator rights: without them the
        failure is said once and events are still written, by level.
        """
        from chatsvc.host.logs import EventLogObserver

        observer = EventLogObserver("chatsvc")
        log = Logger(namespace="chatsvc.net", observer=observer)
        log.info("started")
        log.warn("slow consumer")
        self.assertEqual(
            self.fake.reported,
            [
                ("chatsvc", 4, ["[chatsvc.net#info] started"]),
                ("chatsvc", 2, ["[chatsvc.net#warn] slow consumer"]),
            ],
        )
        self.assertEqual(self.stderr.getvalue().count("cannot register"), 1)

    def test_write_failures_are_said_once(self) -> None:
        from chatsvc.host.logs import EventLogObserver

        observer = EventLogObserver("chatsvc")
        self.fake.fail_reports = True
        log = Logger(namespace="chatsvc.net", observer=observer)
        for _ in range(3):
            log.error("boom")
        self.assertEqual(self.stderr.getvalue().count("cannot write"), 1)
