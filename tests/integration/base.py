"""
Shared set-up of the integration tests: a stage listening on a free loopback
port, clients connected to it, everything closed afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.trial.unittest import TestCase

from chatsvc.host.services import StageService
from tests.support import PacketClient, check_reactor, connect

LOOPBACK = "tcp:0:interface=127.0.0.1"


class IntegrationTestCase(TestCase):
    """
    Starts services and clients and cleans them up.
    """

    timeout = 120

    def setUp(self) -> None:
        check_reactor()
        self.clients: list[PacketClient] = []
        self.addCleanup(self._close_clients)

    async def start(self, service: StageService) -> int:
        """
        Start C{service}; return the port its listener got.
        """
        service.startService()
        self.addCleanup(service.stopService)
        port = await service.listener.listening
        return int(port.getHost().port)

    async def connect(self, port: int, count: int = 1) -> list[PacketClient]:
        clients = await gatherResults(
            [ensureDeferred(connect(port)) for _ in range(count)]
        )
        self.clients.extend(clients)
        return clients

    def _close_clients(self) -> Deferred[Any]:
        waiting = []
        for client in self.clients:
            if client.transport is not None and not client.lost.called:
                client.transport.loseConnection()
                waiting.append(client.lost)
        return gatherResults(waiting)


async def wait_all(
    clients: list[PacketClient],
    condition: Callable[[PacketClient], bool],
    timeout: float = 30,
) -> None:
    """
    Wait until C{condition(client)} holds for every client.
    """
    await gatherResults(
        [
            client.wait_until(lambda c=client: condition(c), timeout)
            for client in clients
        ]
    )
