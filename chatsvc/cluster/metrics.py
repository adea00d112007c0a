# -*- test-case-name: tests.integration.test_cluster_tcp -*-
"""
The cluster link's metrics: whether it is up, the channels the node is
subscribed to, the messages that went over Redis and the publish latency.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chatsvc.cluster.node import ClusterNode


class ClusterCollector(Collector):
    """
    Reads one node's cluster counters when Prometheus scrapes.
    """

    def __init__(self, node: ClusterNode) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node = self._node
        stats = node.link.stats
        yield GaugeMetricFamily(
            "chatsvc_cluster_connected",
            "1 while both connections to the cluster's Redis are up.",
            value=int(node.link.connected),
        )
        yield GaugeMetricFamily(
            "chatsvc_cluster_channels",
            "Room channels this node is subscribed to.",
            value=len(node.channels),
        )
        yield CounterMetricFamily(
            "chatsvc_cluster_messages_in",
            "Room stream messages received from Redis.",
            value=stats.messages_in,
        )
        yield CounterMetricFamily(
            "chatsvc_cluster_messages_out",
            "Room stream messages published to Redis.",
            value=stats.messages_out,
        )
        yield CounterMetricFamily(
            "chatsvc_cluster_nodes_swept",
            "Dead nodes this node cleaned up.",
            value=len(node.swept),
        )


def register_cluster_metrics(registry: CollectorRegistry, node: ClusterNode) -> None:
    """
    Export C{node}'s metrics, including the publish latency histogram.
    """
    registry.register(ClusterCollector(node))
    node.link.stats.publish_seconds = Histogram(
        "chatsvc_cluster_publish_seconds",
        "Time Redis took to acknowledge a room stream message.",
        buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        registry=registry,
    ).observe
