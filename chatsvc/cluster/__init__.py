"""
Many chatsvc processes ("nodes") serving one chat, joined through Redis:
presence, rooms and one ordered stream per room (see the README's "Running a
cluster").
"""

from chatsvc.cluster.link import ClusterUnavailableError, RedisLink
from chatsvc.cluster.node import ClusterConfig, ClusterNode, default_node_id

__all__ = [
    "ClusterConfig",
    "ClusterNode",
    "ClusterUnavailableError",
    "RedisLink",
    "default_node_id",
]
