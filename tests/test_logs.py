"""
Tests for L{chatsvc.host.logs}: formats, files, rotation and levels.
"""

from __future__ import annotations

import io
import json
import signal
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from unittest import mock

from twisted.logger import Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.host import logs
from chatsvc.host.logs import (
    LogSettings,
    make_observer,
    parse_levels,
    twistd_observer,
    use_with_twistd,
)


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
        """
        C{json} writes one JSON object per line, with the rendered message,
        the level, the namespace, the time and the event's own fields.
        """
        directory = tempfile.TemporaryDirectory(prefix="chatsvc-logs-")
        self.addCleanup(directory.cleanup)
        path = Path(directory.name) / "chatsvc.json"
        self.emit(LogSettings(format="json", file=str(path)))
        text = path.read_text()
        self.assertNotIn("\x1e", text)
        records = [json.loads(line) for line in text.splitlines()]
        self.assertEqual(
            [(r["level"], r["namespace"], r["message"]) for r in records],
            [
                ("info", "chatsvc.net.session", "chatsvc.net.session info"),
                ("warn", "chatsvc.net.session", "chatsvc.net.session warn"),
                ("info", "chatsvc.content.chat", "chatsvc.content.chat info"),
                ("warn", "chatsvc.content.chat", "chatsvc.content.chat warn"),
            ],
        )
        self.assertEqual(records[0]["ns"], "chatsvc.net.session")
        when = datetime.fromisoformat(records[0]["time"])
        self.assertLess(abs(when.timestamp() - time.time()), 60)

    def test_json_lines_on_stdout_with_a_failure(self) -> None:
        out = io.StringIO()
        log = Logger(namespace="x", observer=make_observer(LogSettings("json"), out))
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            log.failure("Lost {peer}", peer="1.2.3.4:5", user=object())
        [line] = out.getvalue().splitlines()
        record = json.loads(line)
        self.assertEqual(record["level"], "critical")
        self.assertTrue(record["message"].startswith("Lost 1.2.3.4:5\n"))
        self.assertIn("ZeroDivisionError", record["message"])
        self.assertEqual(record["peer"], "1.2.3.4:5")
        self.assertNotIn("user", record)

    def test_reconnect_retries_not_logged(self) -> None:
        """
        The reconnecting client's line per retry is dropped (RedisLogin says
        once that Redis is down, and once that it is back); its other lines
        are kept.
        """
        out = io.StringIO()
        log = Logger(
            namespace="twisted.application._client_service.ClientService",
            observer=make_observer(LogSettings(), out),
        )
        for attempt in range(10):
            log.info(
                "Scheduling retry {attempt} to connect {endpoint} in {delay} seconds.",
                attempt=attempt,
                endpoint="redis",
                delay=1.0,
            )
        log.warn("Duplicate ClientService.startService")
        self.assertNotIn("Scheduling retry", out.getvalue())
        self.assertIn("Duplicate ClientService.startService", out.getvalue())

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

    def test_twistd_destination_at_info_level(self) -> None:
        """
        Without a C{--log-file}, text goes where twistd's own options send it
        (here C{--logfile}), at level info unless told otherwise.
        """
        directory = tempfile.TemporaryDirectory(prefix="chatsvc-logs-")
        self.addCleanup(directory.cleanup)
        path = Path(directory.name) / "twistd.log"
        if hasattr(signal, "SIGUSR1"):  # twistd's log file rotates on SIGUSR1
            self.addCleanup(
                signal.signal, signal.SIGUSR1, signal.getsignal(signal.SIGUSR1)
            )
        twistd = {"logger": None, "logfile": str(path), "nodaemon": True}
        use_with_twistd(LogSettings(), twistd)
        log = Logger(namespace="chatsvc.net.session", observer=twistd_observer())
        log.debug("a debug line")
        log.info("an info line")
        text = path.read_text()
        self.assertIn("an info line", text)
        self.assertNotIn("a debug line", text)

    def test_twistd_destination_for_json(self) -> None:
        """
        JSON without a C{--log-file} also goes to twistd's C{--logfile}.
        """
        directory = tempfile.TemporaryDirectory(prefix="chatsvc-logs-")
        self.addCleanup(directory.cleanup)
        path = Path(directory.name) / "twistd.log"
        twistd = {"logger": None, "logfile": str(path), "nodaemon": False}
        use_with_twistd(LogSettings(format="json"), twistd)
        Logger(namespace="x", observer=twistd_observer()).info("a {what}", what="b")
        [line] = path.read_text().splitlines()
        self.assertEqual(json.loads(line)["message"], "a b")

    def test_outside_twistd_nothing_changes(self) -> None:
        """
        Outside twistd the settings are not kept for twistd's observer.
        """
        settings = LogSettings(format="json", max_size=123_457)
        use_with_twistd(settings, None)
        self.assertNotIn(settings, [kept for kept, _ in logs._twistd])


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
