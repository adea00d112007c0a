# -*- test-case-name: tests.test_services,tests.test_config -*-
"""
Command-line options of the three stages (C{twistd chatsvc-echo --help}, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.python import usage

from chatsvc.cluster.config import ClusterConfig, default_node_id, parse_shards
from chatsvc.content.chat import ChatConfig
from chatsvc.host.config import ConfigFileOptions
from chatsvc.host.logs import LogSettings, parse_levels, use_with_twistd
from chatsvc.host.redis_login import RedisURL
from chatsvc.host.settings import HostConfig
from chatsvc.host.workers import (
    SHAREABLE,
    WorkerPlan,
    adopted_endpoint,
    endpoint_type,
    refusal,
    shift_port,
    worker_count,
)
from chatsvc.net.config import NetConfig
from chatsvc.net.connection import default_reactor
from chatsvc.web.site import OriginPolicy

DEFAULT_LISTEN = "tcp:11021:backlog=1024"
_N = TypeVar("_N", int, float)


def _non_negative(convert: Callable[[str], _N], doc: str) -> Callable[[str], _N]:
    def coerce(value: str) -> _N:
        number = convert(value)
        if number < 0:
            raise ValueError(f"{value} is negative")
        return number

    coerce.coerceDoc = doc  # type: ignore[attr-defined]
    return coerce


_count = _non_negative(int, "A whole number, 0 or more.")
_seconds = _non_negative(float, "Seconds, 0 or more.")
_number = _non_negative(float, "A number, 0 or more.")
_fd = _non_negative(int, "A file descriptor number.")


class NetOptions(ConfigFileOptions):
    """
    The options every stage has: where to listen and the connection limits.
    """

    optParameters: ClassVar[list[Any]] = [
        [
            "listen",
            "l",
            DEFAULT_LISTEN,
            "Twisted server endpoint to listen on, e.g."
            " tcp:11021:interface=127.0.0.1:backlog=1024 or"
            " tcp6:11021:interface=\\:\\:1 (backlog: connections waiting to be"
            " accepted; Twisted's default is 50).",
        ],
        [
            "max-connections",
            None,
            10_000,
            "Connections above this are closed at once.",
            _count,
        ],
        [
            "max-connections-per-ip",
            None,
            64,
            "Connections one client address (IPv6: one /64) may have open;"
            " more are closed at once (0: no limit).",
            _count,
        ],
        [
            "max-packet-size",
            None,
            1024,
            "Largest packet a client may send, in bytes"
            " (the tutorial client's own maximum is 1024).",
            _count,
        ],
        [
            "send-queue-limit",
            None,
            256 * 1024,
            "Unsent bytes per connection before it"
            " is cut off as a slow consumer (the echo stage stops reading instead).",
            _count,
        ],
        [
            "idle-timeout",
            None,
            0.0,
            "Close connections that sent no complete packet (the echo stage:"
            " no byte) for this many seconds (0: never).",
            _seconds,
        ],
        [
            "socket-send-buffer",
            None,
            64 * 1024,
            "Kernel send buffer (SO_SNDBUF) of each connection, in bytes"
            " (0: the kernel's default, autotuned to megabytes on Linux).",
            _count,
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics at /metrics and a health check at /healthz"
            " on this endpoint, e.g. tcp:9100:interface=127.0.0.1.",
        ],
        [
            "shutdown-grace",
            None,
            10.0,
            "On SIGTERM/SIGINT, seconds to let connections write what is queued.",
            _seconds,
        ],
        ["log-format", None, "text", "Log as readable text or as JSON (text, json)."],
        [
            "log-file",
            None,
            None,
            "Log to this file, rotated by size (default: stdout).",
        ],
        [
            "log-max-size",
            None,
            10 * 1024 * 1024,
            "Rotate the log file at this size.",
            _count,
        ],
        ["log-backups", None, 5, "Rotated log files to keep.", _count],
        [
            "log-level",
            None,
            "info",
            "Default level and levels per namespace,"
            " e.g. info,chatsvc.net=debug (debug, info, warn, error, critical).",
        ],
        ["eventlog-source", None, "chatsvc", "Windows Event Log source name."],
        [
            "listen-fd",
            None,
            None,
            "Accept on this inherited listening socket (a file descriptor)"
            " instead of opening --listen; --workers gives each worker one.",
            _fd,
        ],
    ]
    optFlags: ClassVar[list[Any]] = [
        ["log-syslog", None, "Also log to syslog (POSIX)."],
        ["log-eventlog", None, "Also log to the Windows Event Log (Windows)."],
    ]

    def net_config(self) -> NetConfig:
        """
        The network settings these options describe.
        """
        return NetConfig(
            max_connections=self["max-connections"],
            max_connections_per_ip=self["max-connections-per-ip"],
            max_packet_size=self["max-packet-size"],
            send_queue_limit=self["send-queue-limit"],
            idle_timeout=self["idle-timeout"],
            socket_send_buffer=self["socket-send-buffer"],
        )

    def effective(self) -> dict[str, object]:
        """
        Every option's value, secrets masked, for the start-up log.
        """
        values = {key: value for key, value in self.opts.items() if value is not None}
        if values.get("redis"):
            values["redis"] = str(RedisURL.parse(str(values["redis"])))
        if values.get("cluster"):
            values["cluster"] = ",".join(
                str(RedisURL.parse(url.strip()))
                for url in str(values["cluster"]).split(",")
            )
        return values

    def log_settings(self) -> LogSettings:
        """
        The logging settings these options describe.
        """
        return LogSettings(
            format=self["log-format"],
            file=self["log-file"],
            max_size=self["log-max-size"],
            backups=self["log-backups"],
            levels=parse_levels(self["log-level"]),
            syslog=bool(self["log-syslog"]),
            eventlog=bool(self["log-eventlog"]),
            eventlog_source=self["eventlog-source"],
        )

    def postOptions(self) -> None:
        try:
            self.net = self.net_config()
            self.host = HostConfig(
                metrics=self["metrics"], shutdown_grace=self["shutdown-grace"]
            )
            self.logging = self.log_settings()
        except ValueError as e:
            raise self.config_error(e) from None
        if self.logging != LogSettings():
            use_with_twistd(self.logging, getattr(self, "parent", None))
        self.endpoint: str | IStreamServerEndpoint = self["listen"]
        if self["listen-fd"] is not None:
            try:
                self.endpoint = adopted_endpoint(default_reactor(), self["listen-fd"])
            except ValueError as e:
                raise usage.UsageError(str(e)) from None


class EchoOptions(NetOptions):
    """
    Options of C{chatsvc-echo}.
    """

    synopsis = "[options]  (raw echo: the tutorial's steps 1-3 and 7)"


class SendQueueOptions(NetOptions):
    """
    Options of C{chatsvc-sendqueue}.
    """

    synopsis = "[options]  (framed DEV_ECHO through send queues: steps 4-6)"
    optFlags: ClassVar[list[Any]] = [
        ["disconnect-unknown", None, "Treat unknown packet ids as protocol errors."],
    ]


class ChatOptions(SendQueueOptions):
    """
    Options of C{chatsvc}, the chat server.
    """

    synopsis = "[options]  (the chat server: login, rooms, room chat; steps 8-10)"
    optParameters: ClassVar[list[Any]] = [
        [
            "redis",
            None,
            None,
            "Check logins against Redis at this URL"
            " (redis://[user:password@]host:port/db, rediss:// for TLS);"
            " without it any non-empty user id logs in.",
        ],
        ["redis-key-prefix", None, "", "Prefix of the Redis keys holding passwords."],
        ["redis-timeout", None, 2.0, "Seconds to wait for Redis per login.", _seconds],
        ["rooms", None, 10, "Number of rooms.", _count],
        ["room-start", None, 0, "Number of the first room.", int],
        ["room-capacity", None, 4, "Users per room.", _count],
        ["max-users", None, 10_000, "Logged-in users per server.", _count],
        [
            "login-timeout",
            None,
            10.0,
            "Close connections not logged in this many seconds after connecting"
            " (0: never).",
            _seconds,
        ],
        [
            "chat-rate",
            None,
            20.0,
            "Chat messages per second per user (0: no limit).",
            _number,
        ],
        ["chat-burst", None, 40, "Chat messages a user may send at once.", _count],
        [
            "cluster",
            None,
            None,
            "Serve one chat with the other nodes that use this Redis URL"
            " (redis://[user:password@]host:port/db), or these Redis shards"
            " (URLs separated by commas, the same list on every node); without"
            " it this server is the whole chat.",
        ],
        ["node-id", None, None, "This node's name in the cluster (default host-pid)."],
        [
            "node-timeout",
            None,
            10.0,
            "Seconds after which the cluster drops a node that stopped answering.",
            _seconds,
        ],
        ["cluster-key-prefix", None, "chatsvc:", "Prefix of the cluster's Redis keys."],
        [
            "workers",
            None,
            None,
            "Run this many chatsvc processes on the one --listen socket, each a"
            " node of the --cluster, supervised (0 or auto: one per core).",
            worker_count,
        ],
        [
            "web",
            None,
            None,
            "Serve the chat page at / and its WebSocket at /ws on this endpoint,"
            " e.g. tcp:8080:interface=127.0.0.1.",
        ],
        [
            "web-origins",
            None,
            "",
            "Comma-separated origins (https://host[:port]) whose pages may use"
            " the WebSocket besides the page's own; * for any.",
        ],
    ]

    def chat_config(self) -> ChatConfig:
        """
        The chat settings these options describe.
        """
        return ChatConfig(
            rooms=self["rooms"],
            room_start=self["room-start"],
            room_capacity=self["room-capacity"],
            max_users=self["max-users"],
            chat_rate=self["chat-rate"],
            chat_burst=self["chat-burst"],
            login_timeout=self["login-timeout"],
        )

    def postOptions(self) -> None:
        super().postOptions()
        try:
            self.chat = self.chat_config()
            self.redis = RedisURL.parse(self["redis"]) if self["redis"] else None
            self.cluster = (
                ClusterConfig(
                    parse_shards(self["cluster"]),
                    self["node-id"] or default_node_id(),
                    node_timeout=self["node-timeout"],
                    prefix=self["cluster-key-prefix"],
                )
                if self["cluster"]
                else None
            )
            origins = [o.strip() for o in self["web-origins"].split(",") if o.strip()]
            self.host = replace(
                self.host,
                web=self["web"],
                web_origins=tuple(map(OriginPolicy.check, origins)),
            )
        except ValueError as e:
            raise self.config_error(e) from None
        self.workers = None if self["workers"] is None else self.worker_plan()

    def worker_plan(self) -> WorkerPlan:
        """
        What C{--workers} runs, once the options are known to allow it.
        """
        problem = refusal(default_reactor())
        if problem is not None:
            raise usage.UsageError(problem)
        if self.cluster is None:
            raise usage.UsageError(
                "--workers runs every worker as a node of one cluster:"
                " give --cluster redis://HOST:PORT/DB as well"
            )
        if self["listen-fd"] is not None:
            raise usage.UsageError("--workers and --listen-fd exclude each other")
        if self["web"] is not None:
            raise usage.UsageError(
                "--web is served by one process, not by --workers: serve it from"
                " a node of the same cluster started without --workers"
            )
        kind = endpoint_type(self["listen"])
        if kind not in SHAREABLE:
            raise usage.UsageError(
                f"--workers shares tcp:, tcp6: and unix: listeners, not {kind}:"
            )
        if self["metrics"] is not None:
            try:
                shift_port(self["metrics"], 0)
            except ValueError as e:
                raise usage.UsageError(
                    f"--metrics with --workers: {e} (worker N serves its metrics"
                    " on that port + N - 1)"
                ) from None
        return WorkerPlan(
            count=self["workers"],
            args=self.command_line(
                exclude={"workers", "listen-fd", "node-id", "metrics", "log-file"}
            ),
            node_id=self.cluster.node_id,
            metrics=self["metrics"],
            log_file=self["log-file"],
            stop_timeout=self["shutdown-grace"] + 10.0,
        )
