# -*- test-case-name: tests.test_logs -*-
"""
Where the log goes: readable text to stdout by default (or wherever twistd's
own options send it); JSON lines to stdout or a size-rotated file; syslog on
POSIX; the Windows Event Log on Windows; with a level per namespace
(C{--log-level chatsvc.net=debug}, C{info} by default).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LegacyLogObserverWrapper,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    eventAsText,
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


@implementer(ILogObserver)
class JSONLinesObserver:
    """
    Writes each event as one JSON object on one line, for line-based tools
    (C{jq}, Loki, Vector): C{time} (ISO 8601, UTC), C{level}, C{namespace},
    C{message} (the rendered text, with the traceback of a failure), then
    the event's own fields that are plain strings, numbers or booleans.
    """

    _FIXED = frozenset({"time", "level", "namespace", "message"})

    def __init__(self, stream: IO[Any]) -> None:
        self._stream = stream

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        record: dict[str, object] = {
            "time": datetime.fromtimestamp(event.get("log_time", 0), UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": getattr(level, "name", None),
            "namespace": event.get("log_namespace"),
            "message": eventAsText(
                event, includeTimestamp=False, includeSystem=False
            ).rstrip("\n"),
        }
        for key, value in event.items():
            if (
                not key.startswith("log_")
                and key not in self._FIXED
                and (value is None or isinstance(value, str | int | float))
            ):
                record[key] = value
        self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._stream.flush()


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
        return JSONLinesObserver(stream)
    return textFileLogObserver(stream)


@implementer(ILogObserver)
class _Tee:
    def __init__(self, observers: Iterable[ILogObserver]) -> None:
        self._observers = list(observers)

    def __call__(self, event: dict[str, Any]) -> None:
        for observer in self._observers:
            observer(event)


#: Twisted's reconnecting client logs every retry; a Redis pool of four
#: connections that is down would log four lines a second. RedisLogin logs
#: once when Redis goes down and once when it is back instead.
_RETRY_NAMESPACE = "twisted.application._client_service.ClientService"


@implementer(ILogFilterPredicate)
class _NoRetryLines:
    def __call__(self, event: dict[str, Any]) -> Any:
        if event.get("log_namespace") == _RETRY_NAMESPACE and str(
            event.get("log_format", "")
        ).startswith("Scheduling retry"):
            return PredicateResult.no
        return PredicateResult.maybe


def make_observer(
    settings: LogSettings,
    stdout: IO[str] | None = None,
    destination: ILogObserver | None = None,
) -> ILogObserver:
    """
    Build the log observer C{settings} describe.

    @param destination: where the log goes instead of what C{settings} say
        (twistd's own observer).
    """
    if destination is None:
        destination = _destination(settings, stdout or sys.stdout)
    observers = [destination]
    if settings.syslog:
        from twisted.python.syslog import SyslogObserver

        legacy = SyslogObserver("chatsvc").emit
        observers.append(LegacyLogObserverWrapper(legacy))  # type: ignore[arg-type]
    if settings.eventlog:
        observers.append(EventLogObserver(settings.eventlog_source))
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
    for namespace, level in settings.levels:
        predicate.setLogLevelForNamespace(namespace, level)
    return FilteringLogObserver(_Tee(observers), [_NoRetryLines(), predicate])


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


_twistd: list[tuple[LogSettings, dict[str, Any]]] = []


def use_with_twistd(settings: LogSettings, twistd_options: Any) -> None:
    """
    Make twistd log through L{make_observer} (unless it was given C{--logger}).
    """
    if twistd_options is None or twistd_options.get("logger", "") is not None:
        return  # not run by twistd, or twistd was told which logger to use
    _twistd[:] = [(settings, dict(twistd_options))]
    twistd_options["logger"] = f"{__name__}.twistd_observer"


def _twistd_log_file(twistd_options: dict[str, Any]) -> str | None:
    """
    The file twistd's own options log to: C{--logfile}, or C{twistd.log}
    when it daemonizes; L{None} for standard output.
    """
    name = twistd_options.get("logfile") or None
    if name is None and not twistd_options.get("nodaemon") and sys.platform != "win32":
        name = "twistd.log"
    return None if name == "-" else name


def twistd_observer() -> ILogObserver:
    """
    The observer factory twistd calls (C{--logger}): without C{--log-file},
    the log goes where twistd's own options send it (standard output with
    C{-n}, C{--logfile}, C{twistd.log} when daemonized, or C{--syslog} for
    text), filtered by level.
    """
    settings, twistd_options = (
        _twistd[0] if _twistd else (LogSettings(), {"nodaemon": True})
    )
    if settings.file is not None:
        return make_observer(settings)
    if settings.format != "text":
        return make_observer(replace(settings, file=_twistd_log_file(twistd_options)))
    if sys.platform == "win32":
        from twisted.application.app import AppLogger
    else:
        from twisted.scripts._twistd_unix import UnixAppLogger as AppLogger
    own = AppLogger({**twistd_options, "logger": None})._getLogObserver()
    if not ILogObserver.providedBy(own):
        own = LegacyLogObserverWrapper(own)
    return make_observer(settings, destination=own)
