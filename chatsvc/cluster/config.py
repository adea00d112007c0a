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

    @ivar node_timeout: seconds after which a silent node is declared dead.
    @ivar timeout: seconds a Redis command may take before it counts as
        failed.
    @ivar id_block: unique ids the node takes from the shared counter at once.
    """

    url: RedisURL
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
