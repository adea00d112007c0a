# twistd -ny tac/chat-and-web.tac: an existing Twisted application (here a
# twisted.web site on tcp:8080, or $WEB_LISTEN) with the chat server added
# next to it (on loopback, tcp:11021:interface=127.0.0.1, or $CHATSVC_LISTEN;
# open login elsewhere than loopback needs open_login_anywhere=True).
import os

from twisted.application import service, strports
from twisted.internet import reactor
from twisted.web import resource, server, static

from chatsvc import ChatConfig, NetConfig, chat_service, exit_cleanly_on_signals

application = service.Application("my-game")
chat_service(
    os.environ.get("CHATSVC_LISTEN", "tcp:11021:interface=127.0.0.1:backlog=1024"),
    NetConfig(max_connections=5000),
    ChatConfig(rooms=100, room_capacity=8),
).setServiceParent(application)
root = resource.Resource()
root.putChild(b"", static.Data(b"hello from the game's web site\n", "text/plain"))
site = server.Site(root)
strports.service(os.environ.get("WEB_LISTEN", "tcp:8080"), site).setServiceParent(
    application
)
exit_cleanly_on_signals(reactor)  # SIGTERM/SIGINT: graceful stop, exit status 0
