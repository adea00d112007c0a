# -*- test-case-name: tests.test_cluster_chat,tests.integration.test_cluster_tcp -*-
"""
A node's side of the cluster-wide rooms: its local members, and the room
streams coming from Redis delivered to them in the stream's order.

A local user becomes a member at the point of its own enter event in the
stream, and stops being one when it leaves (at once, locally); so it gets
exactly the events between. The chats of one reactor turn go out as one
message per room (the notifies joined, as a single node sends them), and what
arrives in one read from Redis is delivered as one batch per room: each
member's send queue gets the same bytes once per batch.

The sender of a chat gets its ROOM_CHAT_RESPONSE (0) as soon as the stream
shows its message published, or Redis acknowledged it, whichever comes
first: either way before its own notify. If the message could not be
published, the sender gets a non-zero code and nobody gets the notify.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatsvc.cluster.link import ClusterUnavailableError
from chatsvc.cluster.node import ClusterNode
from chatsvc.cluster.stream import ChatEvent, EnterEvent, Event, LeaveEvent, Member
from chatsvc.protocol import PacketId, leave_user_notify, new_user_notify

H = TypeVar("H", bound=Hashable)
H_contra = TypeVar("H_contra", bound=Hashable, contravariant=True)

_CHAT_NOTIFY = int(PacketId.ROOM_CHAT_NOTIFY)
_CHAT_NOTIFY_SIZE = 295

#: Hands the same bytes to many connections.
Fanout = Callable[[Iterable[H], bytes], None]


class Answers(Protocol[H_contra]):
    """
    How the chat rules take the answers the cluster decided (as
    L{chatsvc.content.chat.ChatServer} does).
    """

    def entered(
        self, handle: H_contra, room_number: int, present: Sequence[tuple[int, bytes]]
    ) -> None:
        """
        C{handle} is now a member of the room; C{present} were there before.
        """

    def entry_refused(self, handle: H_contra, room_number: int, full: bool) -> None:
        """
        C{handle} did not enter: the room is full, or Redis is unreachable.
        """

    def chats_answered(self, handles: Iterable[H_contra], published: bool) -> None:
        """
        The chats of C{handles} (one per chat, in order) were published, or
        could not be.
        """


#: Counts packets sent: packet id, size, recipients.
Count = Callable[[int, int, int], None]


class ClusterRooms(Generic[H]):
    """
    The local members of every room of one node, and the delivery of the
    room streams to them.
    """

    log = Logger()

    def __init__(
        self, node: ClusterNode, fanout: Fanout[H], capacity: int, count: Count
    ) -> None:
        self.node = node
        self.capacity = capacity
        self.members: dict[int, dict[H, Member]] = {}
        self.answers: Answers[H] | None = None
        #: Asks for a reactor turn of the chat server, whose end delivers
        #: what arrived from Redis (L{flush}).
        self.wake: Callable[[], None] = self.flush
        self._fanout = fanout
        self._count = count
        self._tokens = itertools.count(1)
        #: Entries waiting for their enter event: handle (None once it is
        #: gone), room, member.
        self._entering: dict[int, tuple[H | None, int, Member]] = {}
        self._timers: dict[int, IDelayedCall] = {}
        self._chatting: dict[int, list[H]] = {}
        self._outgoing: dict[int, tuple[list[H], list[bytes]]] = {}
        self._incoming: dict[int, list[bytes]] = {}
        node.link.on_messages_end = self._arrived

    def enter(self, room: int, handle: H, unique_id: int, user_id: bytes) -> None:
        """
        Ask the cluster to let C{handle} into C{room}; the answer goes to
        L{Answers.entered} or L{Answers.entry_refused}.
        """
        member = Member(unique_id, user_id)
        token = next(self._tokens)
        self._entering[token] = (handle, room, member)
        entering = ensureDeferred(self.node.enter(room, member, self.capacity, token))
        entering.addBoth(self._enter_answered, token, room)

    def _enter_answered(self, result: Any, token: int, room: int) -> None:
        if result is True:
            # The enter event answers; if the stream lost it, give up on it.
            if token in self._entering:
                self._timers[token] = self.node.clock.callLater(
                    self.node.link.timeout, self._enter_event_missing, token, room
                )
            return
        pending = self._entering.pop(token, None)
        if isinstance(result, Failure):
            if not result.check(ClusterUnavailableError):
                self.log.failure("Entering room {room} failed", result, room=room)
            else:
                self.log.info(
                    "Entering room {room} failed: {error}",
                    room=room,
                    error=result.getErrorMessage(),
                )
        if pending is not None and pending[0] is not None:
            self._answer().entry_refused(pending[0], room, full=result is False)

    def close(self) -> None:
        """
        Stop waiting for enter events (the node is stopping).
        """
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _enter_event_missing(self, token: int, room: int) -> None:
        del self._timers[token]
        pending = self._entering.pop(token, None)
        if pending is None:
            return
        handle, _, member = pending
        self.log.warn(
            "The enter event of room {room} did not arrive; the entry is undone",
            room=room,
        )
        self.node.leave(room, member.unique_id)
        if handle is not None:
            self._answer().entry_refused(handle, room, full=False)

    def leave(self, room: int, handle: H, unique_id: int) -> None:
        """
        C{handle} leaves C{room}: it gets what arrived until now, nothing
        later; the others get its ROOM_LEAVE_USER_NTF through the stream.
        """
        self._deliver_room(room)
        members = self.members.get(room)
        if members is not None and members.pop(handle, None) is not None:
            if not members:
                del self.members[room]
            self.node.leave(room, unique_id)

    def cancel(self, handle: H) -> None:
        """
        C{handle} is gone: its entry in progress is undone when its enter
        event arrives.
        """
        for token, (waiting, room, member) in list(self._entering.items()):
            if waiting == handle:
                self._entering[token] = (None, room, member)

    def chat(self, room: int, handle: H, notify: bytes) -> None:
        """
        Publish a chat notify from C{handle} at the end of this turn.
        """
        outgoing = self._outgoing.get(room)
        if outgoing is None:
            self._outgoing[room] = ([handle], [notify])
        else:
            outgoing[0].append(handle)
            outgoing[1].append(notify)

    def _arrived(self) -> None:
        if self._incoming:
            self.wake()

    def flush(self) -> None:
        """
        The turn ends: deliver what arrived from Redis, and publish this
        turn's chats, one message per room.
        """
        self.deliver()
        outgoing, self._outgoing = self._outgoing, {}
        for room, (handles, notifies) in outgoing.items():
            token = next(self._tokens)
            self._chatting[token] = handles
            try:
                publishing = self.node.publish(room, token, b"".join(notifies))
            except ClusterUnavailableError:
                self._chats_failed(Failure(), token)
                continue
            publishing.addCallbacks(
                self._chats_published,
                self._chats_failed,
                callbackArgs=(token,),
                errbackArgs=(token,),
            )

    def _chats_published(self, receivers: Any, token: int) -> None:
        handles = self._chatting.pop(token, None)
        if handles is not None:
            self._answer().chats_answered(handles, True)

    def _chats_failed(self, failure: Failure, token: int) -> None:
        handles = self._chatting.pop(token, None)
        if handles is not None:
            self._answer().chats_answered(handles, False)
        if not failure.check(ClusterUnavailableError):
            self.log.failure("Publishing a chat failed", failure)

    def _answer(self) -> Answers[H]:
        assert self.answers is not None, "ClusterRooms answers nobody"
        return self.answers

    def room_event(self, room: int, event: Event) -> None:
        """
        The next event of C{room}'s stream.
        """
        if isinstance(event, ChatEvent):
            if event.node == self.node.node:
                self._chats_published(None, event.token)
            self._queue(room, event.packet)
        elif isinstance(event, LeaveEvent):
            self._queue(room, leave_user_notify(event.unique_id))
        else:
            self._entered(room, event)

    def _entered(self, room: int, event: EnterEvent) -> None:
        member = event.member
        self._queue(room, new_user_notify(member.unique_id, member.user_id))
        if event.node != self.node.node:
            return
        pending = self._entering.pop(event.token, None)
        if pending is None:
            return
        timer = self._timers.pop(event.token, None)
        if timer is not None:
            timer.cancel()
        handle = pending[0]
        if handle is None:
            self.node.leave(room, member.unique_id)
            return
        self._deliver_room(room)
        self.members.setdefault(room, {})[handle] = member
        self._answer().entered(handle, room, event.present)

    def _queue(self, room: int, data: bytes) -> None:
        incoming = self._incoming.get(room)
        if incoming is None:
            self._incoming[room] = [data]
        else:
            incoming.append(data)

    def _deliver_room(self, room: int) -> None:
        events = self._incoming.pop(room, None)
        if events is not None:
            self._hand_over(room, events)

    def deliver(self) -> None:
        """
        Deliver what arrived from Redis.
        """
        incoming, self._incoming = self._incoming, {}
        for room, events in incoming.items():
            self._hand_over(room, events)

    def _hand_over(self, room: int, events: list[bytes]) -> None:
        members = self.members.get(room)
        if not members:
            return
        data = events[0] if len(events) == 1 else b"".join(events)
        self._fanout(members, data)
        sent = self._count
        for event in events:
            packet_id = int.from_bytes(event[2:4], "little")
            if packet_id == _CHAT_NOTIFY:
                count = len(event) // _CHAT_NOTIFY_SIZE
                sent(packet_id, _CHAT_NOTIFY_SIZE, count * len(members))
            else:
                sent(packet_id, len(event), len(members))
