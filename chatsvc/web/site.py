# -*- test-case-name: tests.test_web -*-
"""
The web site of C{--web ENDPOINT}: the chat page at C{/} and the WebSocket
endpoint at C{/ws}, served by the chat server's own process and reactor.

The page is static (HTML, CSS and one JavaScript module shipped in the
package) and speaks the binary protocol itself; C{/server.json} tells it the
rooms and the sentences for every result code. Every response carries a
strict Content-Security-Policy (scripts, styles and connections from this
origin only; no inline script, no frames, no forms posting elsewhere), and
C{/ws} accepts a browser only from an allowed origin (L{OriginPolicy}).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Final
from urllib.parse import urlsplit

from twisted.internet.interfaces import IReactorTime
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.websocket import WebSocketResource

from chatsvc.client.render import RESULTS, failure_text
from chatsvc.content.chat import ChatConfig
from chatsvc.net.connection import default_reactor
from chatsvc.net.session import SessionFactory
from chatsvc.net.websocket import WebSocketSessions
from chatsvc.protocol import PacketId, Response

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; base-uri 'none'; form-action 'none';"
    " frame-ancestors 'none'"
)

_SECURITY_HEADERS: Final = {
    b"content-security-policy": CONTENT_SECURITY_POLICY.encode(),
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
    b"cross-origin-opener-policy": b"same-origin",
    b"cache-control": b"no-cache",
}

#: The page's files: path under C{/}, file in C{static/}, content type.
PAGE_FILES: Final = (
    (b"", "index.html", "text/html; charset=utf-8"),
    (b"chat.js", "chat.js", "text/javascript; charset=utf-8"),
    (b"chat.css", "chat.css", "text/css; charset=utf-8"),
    (b"favicon.svg", "favicon.svg", "image/svg+xml"),
)

_RESPONSES: Final = (
    PacketId.LOGIN_RESPONSE,
    PacketId.ROOM_ENTER_RESPONSE,
    PacketId.ROOM_LEAVE_RESPONSE,
    PacketId.ROOM_CHAT_RESPONSE,
)


def _secure(request: Request) -> None:
    for name, value in _SECURITY_HEADERS.items():
        request.setHeader(name, value)


class Document(Resource):
    """
    One file of the page, held in memory, sent with the security headers.
    """

    isLeaf = True

    def __init__(self, data: bytes, content_type: str) -> None:
        super().__init__()
        self._data = data
        self._type = content_type.encode()

    def render_GET(self, request: Request) -> bytes:
        _secure(request)
        request.setHeader(b"content-type", self._type)
        return self._data


def server_info(chat: ChatConfig) -> dict[str, object]:
    """
    What the page needs to know of this server: the rooms, the largest chat
    message and, by response id and result code, the terminal client's
    sentence for every failure.
    """
    return {
        "rooms": {"start": chat.room_start, "count": chat.rooms},
        "results": {
            str(int(packet_id)): {
                str(code): failure_text(Response(packet_id, code))
                for code in RESULTS
                if code
            }
            for packet_id in _RESPONSES
        },
    }


class OriginPolicy:
    """
    Which web pages may open a WebSocket to the server: the page's own origin
    and those listed (C{"*"}: any).

    Browsers always send C{Origin} with a WebSocket handshake, so a page of
    another site cannot use a visitor's browser to talk to the server. A
    client that is not a browser sends none and is let in: it could send any
    origin it liked anyway.
    """

    def __init__(self, origins: Iterable[str] = ()) -> None:
        listed = [origin.strip().lower().rstrip("/") for origin in origins]
        self.any = "*" in listed
        self.allowed = frozenset(origin for origin in listed if origin != "*")

    @staticmethod
    def check(origin: str) -> str:
        """
        Return C{origin} if it is C{*} or C{scheme://host[:port]}.

        @raise ValueError: if it is neither.
        """
        if origin == "*":
            return origin
        parts = urlsplit(origin)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise ValueError(
                f"web_origins has {origin!r}, which is not an origin"
                " (http[s]://host[:port], or *)"
            )
        return origin

    def allows(self, request: Request) -> bool:
        """
        Whether the handshake C{request} comes from an allowed page.
        """
        header = request.getHeader(b"origin")
        if header is None or self.any:
            return True
        origin = header.decode("latin-1").lower()
        if origin in self.allowed:
            return True
        # Same origin: the page was served under the host the browser asks
        # for. The scheme is not compared, so that TLS may end at a proxy.
        host = request.getHeader(b"host")
        return host is not None and urlsplit(origin).netloc == host.decode(
            "latin-1"
        ).lower().rstrip(".")


class SessionsResource(WebSocketResource):
    """
    C{/ws}: WebSocket handshakes from allowed origins become sessions.
    """

    def __init__(self, sessions: WebSocketSessions, origins: OriginPolicy) -> None:
        super().__init__(sessions)
        self._sessions = sessions
        self._origins = origins

    def render_GET(self, request: Request) -> bytes | int:
        _secure(request)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        upgrade = request.getHeader(b"upgrade") or b""
        if upgrade.lower() != b"websocket":
            request.setResponseCode(426)  # Upgrade Required
            request.setHeader(b"upgrade", b"websocket")
            return b"This is chatsvc's WebSocket endpoint; open / to chat.\n"
        if not self._origins.allows(request):
            factory = self._sessions.factory
            factory.warnings.warn(
                "Refused a WebSocket from {peer}: origin {origin} is not allowed"
                " (--web-origins)",
                peer=request.getClientAddress(),
                origin=(request.getHeader(b"origin") or b"").decode("latin-1"),
            )
            request.setResponseCode(http.FORBIDDEN)
            return b"This page's origin may not connect (--web-origins).\n"
        return super().render_GET(request)


class NotFound(Resource):
    """
    Anything else: 404, with the security headers.
    """

    isLeaf = True

    def render(self, request: Request) -> bytes:
        _secure(request)
        request.setResponseCode(http.NOT_FOUND)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Not found.\n"


class _Root(Resource):
    def getChild(self, path: bytes, request: Request) -> Resource:
        return NotFound()


def chat_site(
    factory: SessionFactory,
    chat: ChatConfig,
    origins: Sequence[str] = (),
    reactor: IReactorTime | None = None,
) -> Site:
    """
    The site of C{--web}: the page, C{/server.json} and C{/ws}, whose
    sessions C{factory} runs beside its TCP ones.
    """
    root = _Root()
    static = resources.files(__package__).joinpath("static")
    for path, name, content_type in PAGE_FILES:
        root.putChild(path, Document(static.joinpath(name).read_bytes(), content_type))
    info = json.dumps(server_info(chat), ensure_ascii=False).encode()
    root.putChild(b"server.json", Document(info, "application/json; charset=utf-8"))
    root.putChild(
        b"ws", SessionsResource(WebSocketSessions(factory), OriginPolicy(origins))
    )
    site = Site(root, reactor=reactor or default_reactor())
    site.displayTracebacks = False
    return site
