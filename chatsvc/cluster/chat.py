# -*- test-case-name: tests.integration.test_cluster_tcp -*-
"""
One chat server joined to a cluster: what L{chatsvc.content.chat.ChatServer}
is given in place of its local presence, unique ids and rooms.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from twisted.internet.interfaces import IReactorTime

from chatsvc.cluster.config import ClusterConfig
from chatsvc.cluster.node import ClusterNode
from chatsvc.cluster.rooms import ClusterRooms, Fanout
from chatsvc.cluster.stream import Event, Member
from chatsvc.content.chat import ChatServer, State
from chatsvc.content.presence import LocalPresence
from chatsvc.protocol import Result


class ClusterPresence(LocalPresence):
    """
    The users logged in on this node; logging one out also frees its id in
    the cluster (the claim is made while the login is checked).
    """

    def __init__(self, node: ClusterNode) -> None:
        super().__init__()
        self._node = node

    def release(self, user_id: bytes) -> None:
        if user_id in self:
            super().release(user_id)
            self._node.release(user_id)


class ClusterChat:
    """
    The cluster side of one chat server: the node, its rooms, the login
    claims and unique ids, and the node's view of the server's users.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        config: ClusterConfig,
        capacity: int,
        fanout: Fanout[Any],
    ) -> None:
        self.node = ClusterNode(reactor, config, self)
        self.presence = ClusterPresence(self.node)
        self.rooms: ClusterRooms[Any] = ClusterRooms(
            self.node, fanout, capacity, self._count
        )
        self.server: ChatServer[Any] | None = None
        self._close: Callable[[Any], None] = lambda handle: None
        self._reserved: deque[int] = deque()

    def bind(self, server: ChatServer[Any], close: Callable[[Any], None]) -> None:
        """
        Serve C{server}, whose connections C{close} closes.
        """
        self.server = server
        self.rooms.answers = server
        self._close = close

    def _count(self, packet_id: int, size: int, recipients: int) -> None:
        if self.server is not None:
            self.server.stats.sent(packet_id, size, recipients)

    @property
    def unique_ids(self) -> Iterator[int]:
        """
        The unique ids of logins, reserved by L{admit}.
        """
        reserved = self._reserved
        while True:
            yield reserved.popleft()

    async def admit(self, user_id: bytes) -> Result:
        """
        Claim C{user_id} for this node and reserve its login's unique id: 0,
        or 31 if it is logged in on another node.

        @raise chatsvc.cluster.ClusterUnavailableError: if Redis is unreachable.
        """
        if not await self.node.claim(user_id):
            return Result.LOGIN_USER_ALREADY
        self._reserved.append(await self.node.unique_id())
        return Result.NONE

    # What the node asks of the chat server.

    def room_event(self, room: int, event: Event) -> None:
        self.rooms.room_event(room, event)

    def local_users(self) -> Iterable[tuple[bytes, tuple[int, Member] | None]]:
        if self.server is None:
            return
        for client in self.server.clients.values():
            if client.state in (State.LOGIN, State.ENTERING):
                yield client.user_id, None
            elif client.state is State.ROOM and client.room is not None:
                member = Member(client.unique_id, client.user_id)
                yield client.user_id, (client.room.number, member)

    def drop_users(self, user_ids: Iterable[bytes] | None) -> None:
        if self.server is None:
            return
        dropped = None if user_ids is None else set(user_ids)
        for handle, client in list(self.server.clients.items()):
            if client.state is State.NONE:
                continue
            if dropped is None or client.user_id in dropped:
                self._close(handle)
                self.server.disconnect(handle)
