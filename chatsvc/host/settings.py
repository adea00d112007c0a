"""
Settings of the host layer, shared by the options and the services.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatsvc.host.logs import LogSettings


@dataclass(frozen=True, slots=True)
class HostConfig:
    """
    What the host adds around a stage.

    @ivar metrics: endpoint serving C{/metrics} and C{/healthz}, if any.
    @ivar shutdown_grace: seconds a stopping server lets connections finish
        writing what they have queued before it aborts them.
    @ivar web: endpoint serving the chat page and its WebSocket (chat only).
    @ivar web_origins: origins besides the page's own whose pages may open a
        WebSocket; C{"*"} for any.
    """

    metrics: str | None = None
    shutdown_grace: float = 10.0
    web: str | None = None
    web_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.shutdown_grace < 0:
            raise ValueError("shutdown_grace must be 0 or more")


__all__ = ["HostConfig", "LogSettings"]
