# -*- test-case-name: tests.test_cluster,tests.test_config -*-
"""
How a node joins a cluster (C{--cluster}, C{--node-id}, C{--node-timeout}).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from chatsvc.host.redis_login import RedisURL


def default_node_id() -> str:
    """
    A readable node id unique on this network: host name and process id.
    """
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """
    How a node joins the cluster.

    @ivar url: the cluster's Redis, or its shards in order: rooms are spread
        over the shards by a hash of the room number, presence by a hash of
        the user id, so every node must be given the same shards in the same
        order.
    @ivar node_timeout: seconds after which a silent node is declared dead.
    @ivar timeout: seconds a Redis command may take before it counts as
        failed.
    @ivar id_block: unique ids the node takes from the shared counter at once.
    """

    url: RedisURL | tuple[RedisURL, ...]
    node_id: str
    node_timeout: float = 10.0
    timeout: float = 2.0
    prefix: str = "chatsvc:"
    id_block: int = 1000

    def __post_init__(self) -> None:
        if not self.node_id or len(self.node_id.encode()) > 200:
            raise ValueError("node_id must be 1 to 200 bytes")
        if self.node_timeout < 1:
            raise ValueError("node_timeout must be at least 1 second")
        if self.id_block < 1:
            raise ValueError("id_block must be at least 1")
        if not self.shards:
            raise ValueError("url must name at least one Redis")
        if len(set(self.layout.split(","))) < len(self.shards):
            raise ValueError(f"url names one Redis twice: {self.layout}")

    @property
    def shards(self) -> tuple[RedisURL, ...]:
        """
        The cluster's Redis shards, in order.
        """
        return self.url if isinstance(self.url, tuple) else (self.url,)

    @property
    def layout(self) -> str:
        """
        The shards as every node of the cluster must name them (passwords
        masked).
        """
        return ",".join(str(url) for url in self.shards)


def parse_shards(value: str) -> RedisURL | tuple[RedisURL, ...]:
    """
    The value of C{--cluster}: one Redis URL, or several separated by
    commas (the shards).

    @raise ValueError: if a URL is not valid.
    """
    urls = tuple(RedisURL.parse(part.strip()) for part in value.split(","))
    return urls[0] if len(urls) == 1 else urls
