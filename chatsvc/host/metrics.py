# -*- test-case-name: tests.integration.test_operations -*-
"""
Prometheus metrics and the health check (C{--metrics ENDPOINT}).

The network and content layers count with plain integers; L{StageCollector}
turns them into metric families when Prometheus scrapes. prometheus_client's
Twisted resource collects in a thread-pool thread, so every collection starts
from copies taken with single C{dict()}/C{list()} calls, which CPython makes
atomically.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.twisted import MetricsResource
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from chatsvc.content.chat import ChatServer
from chatsvc.net.connection import LimitedFactory
from chatsvc.net.session import Session
from chatsvc.net.websocket import WEBSOCKET
from chatsvc.protocol import PacketId

#: A health condition: returns L{None} when fine, else what is wrong.
HealthCheck = Callable[[], str | None]


def packet_name(packet_id: int) -> str:
    """
    The metric label of a packet id: its name, or C{unknown} for every id
    chatsvc does not know, so that clients cannot create metric series.
    """
    try:
        return PacketId(packet_id).name
    except ValueError:
        return "unknown"


def _by_packet(
    name: str, documentation: str, counts: dict[int, int]
) -> CounterMetricFamily:
    by_name: Counter[str] = Counter()
    for packet_id, value in counts.items():
        by_name[packet_name(packet_id)] += value
    family = CounterMetricFamily(name, documentation, labels=["packet"])
    for label, value in sorted(by_name.items()):
        family.add_metric([label], value)
    return family


class StageCollector(Collector):
    """
    Reads one stage's counters: connections, packets, bytes, errors and, for
    the chat stage, users, rooms and logins.
    """

    def __init__(
        self,
        factory: LimitedFactory,
        chat: ChatServer[Any] | None = None,
        packets_out: Callable[[], dict[int, int]] | None = None,
        bytes_out: Callable[[], dict[int, int]] | None = None,
    ) -> None:
        self._factory = factory
        self._chat = chat
        self._packets_out = packets_out
        self._bytes_out = bytes_out

    def collect(self) -> Iterator[Metric]:
        factory = self._factory
        stats = factory.stats
        connections = list(factory.connections.values())
        open_connections = GaugeMetricFamily(
            "chatsvc_connections",
            "Open client connections, by transport (tcp, websocket).",
            labels=["transport"],
        )
        kinds = Counter(c.transport_kind for c in connections)
        for kind in sorted(kinds.keys() | {"tcp", WEBSOCKET}):
            open_connections.add_metric([kind], kinds[kind])
        yield open_connections
        refused = CounterMetricFamily(
            "chatsvc_connections_refused",
            "Connections refused, by the limit they hit.",
            labels=["limit"],
        )
        refused.add_metric(["max-connections"], stats.refused)
        refused.add_metric(["max-connections-per-ip"], stats.refused_per_ip)
        yield refused
        yield CounterMetricFamily(
            "chatsvc_slow_consumers",
            "Connections cut off past --send-queue-limit.",
            value=stats.slow_consumers,
        )
        yield CounterMetricFamily(
            "chatsvc_idle_timeouts",
            "Connections closed by --idle-timeout.",
            value=stats.idle_timeouts,
        )
        errors = CounterMetricFamily(
            "chatsvc_protocol_errors",
            "Connections closed for bad input.",
            labels=["kind"],
        )
        for kind, count in sorted(dict(stats.protocol_errors).items()):
            errors.add_metric([kind], count)
        yield errors
        yield _by_packet(
            "chatsvc_packets_in", "Packets received.", dict(stats.packets_in)
        )
        yield _by_packet(
            "chatsvc_packet_bytes_in",
            "Bytes of packets received.",
            dict(stats.bytes_in),
        )
        yield CounterMetricFamily(
            "chatsvc_bytes_out", "Bytes handed to transports.", value=stats.bytes_out
        )
        if self._packets_out is not None and self._bytes_out is not None:
            yield _by_packet(
                "chatsvc_packets_out", "Packets sent.", self._packets_out()
            )
            yield _by_packet(
                "chatsvc_packet_bytes_out",
                "Bytes of packets sent.",
                self._bytes_out(),
            )
        yield GaugeMetricFamily(
            "chatsvc_send_queue_bytes",
            "Bytes queued and not yet handed to transports.",
            value=sum(c.pending_output for c in connections if isinstance(c, Session)),
        )
        if self._chat is not None:
            yield from self._collect_chat(self._chat)

    def _collect_chat(self, chat: ChatServer[Any]) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "chatsvc_login_timeouts",
            "Connections closed for not logging in within --login-timeout.",
            value=self._factory.stats.deadlines_missed,
        )
        yield GaugeMetricFamily(
            "chatsvc_users",
            "Logged-in users (and logins in progress).",
            value=chat.users,
        )
        rooms = GaugeMetricFamily(
            "chatsvc_room_users", "Users per room.", labels=["room"]
        )
        for room in chat.rooms:
            rooms.add_metric([str(room.number)], len(room.members))
        yield rooms
        logins = CounterMetricFamily(
            "chatsvc_logins", "Login results, by result code.", labels=["result"]
        )
        for result, count in sorted(dict(chat.stats.logins).items()):
            logins.add_metric([str(int(result))], count)
        yield logins


def redis_latency(registry: CollectorRegistry) -> Histogram:
    """
    The histogram of Redis login lookups, in seconds.
    """
    return Histogram(
        "chatsvc_redis_request_seconds",
        "Time Redis took to answer a login lookup.",
        buckets=(
            0.0005,
            0.001,
            0.0025,
            0.005,
            0.01,
            0.025,
            0.05,
            0.1,
            0.25,
            0.5,
            1,
            2.5,
        ),
        registry=registry,
    )


class HealthResource(Resource):
    """
    C{/healthz}: 200 while every check passes, 503 with the reasons otherwise.
    """

    isLeaf = True

    def __init__(self, checks: Iterable[HealthCheck]) -> None:
        super().__init__()
        self._checks = list(checks)

    def render_GET(self, request: Request) -> bytes:
        problems = [problem for check in self._checks if (problem := check())]
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        if problems:
            request.setResponseCode(503)
            return ("\n".join(problems) + "\n").encode()
        return b"ok\n"


class QuietSite(Site):
    """
    A site that keeps scrapes out of the log.
    """

    def log(self, request: http.Request) -> None:
        pass


def metrics_site(registry: CollectorRegistry, checks: Iterable[HealthCheck]) -> Site:
    """
    The HTTP site serving C{/metrics} and C{/healthz}.
    """
    root = Resource()
    root.putChild(b"metrics", MetricsResource(registry))
    root.putChild(b"healthz", HealthResource(checks))
    return QuietSite(root)
