"""
Many chatsvc processes ("nodes") serving one chat, joined through Redis:
presence, rooms and one ordered stream per room (see the README's "Running a
cluster").
"""

from chatsvc.cluster.config import ClusterConfig, default_node_id
from chatsvc.cluster.link import ClusterUnavailableError, RedisLink
from chatsvc.cluster.node import ClusterNode

__all__ = [
    "ClusterConfig",
    "ClusterNode",
    "ClusterUnavailableError",
    "RedisLink",
    "default_node_id",
]
