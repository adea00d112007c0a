# -*- test-case-name: tests.test_logs -*-
"""
Where the log goes: readable text to stdout by default; Twisted's JSON log
format to a size-rotated file; syslog on POSIX; the Windows Event Log on
Windows; with a level per namespace (C{--log-level chatsvc.net=debug}).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LegacyLogObserverWrapper,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    eventAsText,
    jsonFileLogObserver,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer

log = Logger()

FORMATS = ("text", "json")


def parse_levels(spec: str) -> tuple[tuple[str, LogLevel], ...]:
    """
    Parse C{"info,chatsvc.net=debug"}: a default level and levels per namespace.

    @raise ValueError: for an unknown level name.
    """
    levels = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        namespace, _, name = item.rpartition("=")
        try:
            level = LogLevel.levelWithName(name.strip().lower())
        except Exception:
            names = ", ".join(lvl.name for lvl in LogLevel.iterconstants())
            raise ValueError(f"log_level {name!r} is not one of {names}") from None
        levels.append((namespace.strip(), level))
    return tuple(levels)


@dataclass(frozen=True, slots=True)
class LogSettings:
    """
    Log destinations and levels.

    @ivar file: a file to log to, rotated by size; L{None} for standard output.
    @ivar levels: C{(namespace, level)} pairs; the empty namespace sets the
        default level.
    """

    format: str = "text"
    file: str | None = None
    max_size: int = 10 * 1024 * 1024
    backups: int = 5
    levels: tuple[tuple[str, LogLevel], ...] = (("", LogLevel.info),)
    syslog: bool = False
    eventlog: bool = False
    eventlog_source: str = "chatsvc"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"log_format must be one of {', '.join(FORMATS)}")
        if self.max_size < 1024:
            raise ValueError("log_max_size must be at least 1024 bytes")
        if self.syslog and sys.platform == "win32":
            raise ValueError("log_syslog is not available on Windows")
        if self.eventlog and sys.platform != "win32":
            raise ValueError("log_eventlog is only available on Windows")


def _destination(settings: LogSettings, stdout: IO[str]) -> ILogObserver:
    stream: IO[Any]
    if settings.file is None:
        stream = stdout
    else:
        stream = LogFile.fromFullPath(
            settings.file,
            rotateLength=settings.max_size,
            maxRotatedFiles=settings.backups,
        )
    if settings.format == "json":
        return jsonFileLogObserver(stream)
    return textFileLogObserver(stream)


@implementer(ILogObserver)
class _Tee:
    def __init__(self, observers: Iterable[ILogObserver]) -> None:
        self._observers = list(observers)

    def __call__(self, event: dict[str, Any]) -> None:
        for observer in self._observers:
            observer(event)


def make_observer(settings: LogSettings, stdout: IO[str] | None = None) -> ILogObserver:
    """
    Build the log observer C{settings} describe.
    """
    observers = [_destination(settings, stdout or sys.stdout)]
    if settings.syslog:
        from twisted.python.syslog import SyslogObserver

        legacy = SyslogObserver("chatsvc").emit
        observers.append(LegacyLogObserverWrapper(legacy))  # type: ignore[arg-type]
    if settings.eventlog:
        observers.append(EventLogObserver(settings.eventlog_source))
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
    for namespace, level in settings.levels:
        predicate.setLogLevelForNamespace(namespace, level)
    return FilteringLogObserver(_Tee(observers), [predicate])


@implementer(ILogObserver)
class EventLogObserver:
    """
    Writes events to the Windows Event Log under C{source} (pywin32).

    Registering a new source needs administrator rights; if that fails it is
    reported once and events are still written (Windows then shows them with
    a note that the source is unknown).
    """

    def __init__(self, source: str) -> None:
        import win32evtlog
        import win32evtlogutil

        self._source = source
        self._failed = False
        self._report = win32evtlogutil.ReportEvent
        self._types = {
            LogLevel.debug: win32evtlog.EVENTLOG_INFORMATION_TYPE,
            LogLevel.info: win32evtlog.EVENTLOG_INFORMATION_TYPE,
            LogLevel.warn: win32evtlog.EVENTLOG_WARNING_TYPE,
            LogLevel.error: win32evtlog.EVENTLOG_ERROR_TYPE,
            LogLevel.critical: win32evtlog.EVENTLOG_ERROR_TYPE,
        }
        try:
            win32evtlogutil.AddSourceToRegistry(source)
        except Exception as e:
            print(
                f"chatsvc: cannot register Event Log source {source!r} ({e});"
                " logging continues",
                file=sys.stderr,
            )

    def __call__(self, event: dict[str, Any]) -> None:
        text = eventAsText(event, includeTimestamp=False)
        event_type = self._types.get(event.get("log_level", LogLevel.info), 4)
        try:
            self._report(self._source, 1, eventType=event_type, strings=[text])
        except Exception as e:
            if not self._failed:
                self._failed = True
                print(f"chatsvc: cannot write to the Event Log: {e}", file=sys.stderr)


_twistd_settings: list[LogSettings] = []


def use_with_twistd(settings: LogSettings, twistd_options: Any) -> None:
    """
    Make twistd log through L{make_observer} (unless it was given C{--logger}).
    """
    if twistd_options is None or twistd_options.get("logger", "") is not None:
        return  # not run by twistd, or twistd was told which logger to use
    _twistd_settings[:] = [settings]
    twistd_options["logger"] = f"{__name__}.twistd_observer"


def twistd_observer() -> ILogObserver:
    """
    The observer factory twistd calls (C{--logger}).
    """
    return make_observer(_twistd_settings[0] if _twistd_settings else LogSettings())
