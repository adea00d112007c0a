"""
What C{--workers} needs of the reactor it runs on: adopting a listening
socket made elsewhere. Where the reactor can (epoll, poll, select), a chat
server serves clients on a socket it adopted; where it cannot (IOCP),
C{--workers} and C{--listen-fd} are refused with one line.
"""

from __future__ import annotations

import os
import socket

from twisted.internet.interfaces import IReactorSocket
from twisted.python import usage

from chatsvc.host.options import ChatOptions
from chatsvc.host.services import chat_service
from chatsvc.protocol import PacketId, Response, login_request
from tests.integration.base import IntegrationTestCase
from tests.support import reactor

CLUSTER = "redis://127.0.0.1:6379/0"


def listening_socket() -> socket.socket:
    """
    A listening socket on a free loopback port, as the supervisor makes it.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(50)
    return listener


class AdoptedSocketTests(IntegrationTestCase):
    def options(self, args: list[str]) -> ChatOptions:
        options = ChatOptions()
        options.parseOptions(args)
        return options

    async def test_chat_on_an_adopted_socket(self) -> None:
        listener = listening_socket()
        self.addCleanup(listener.close)
        if not IReactorSocket.providedBy(reactor):
            with self.assertRaises(usage.UsageError) as raised:
                self.options(["--listen-fd", str(listener.fileno())])
            self.assertIn("adoptStreamPort", str(raised.exception))
            return
        # The endpoint closes the descriptor it adopted: give it a copy.
        options = self.options(["--listen-fd", str(os.dup(listener.fileno()))])
        service = chat_service(options.endpoint, options.net, options.chat)
        port = await self.start(service)
        self.assertEqual(port, listener.getsockname()[1])
        [client] = await self.connect(port)
        client.send(login_request("alice", "pw"))
        await client.wait_events(1)
        self.assertEqual(client.take(), [Response(PacketId.LOGIN_RESPONSE, 0)])

    def test_workers_need_adoption(self) -> None:
        args = ["--workers", "2", "--cluster", CLUSTER]
        if IReactorSocket.providedBy(reactor):
            plan = self.options(args).workers
            assert plan is not None
            self.assertEqual(plan.count, 2)
            return
        with self.assertRaises(usage.UsageError) as raised:
            self.options(args)
        message = str(raised.exception)
        self.assertNotIn("\n", message)
        self.assertIn("--listen tcp:PORT", message)
