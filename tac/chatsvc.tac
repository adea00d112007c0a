# twistd -ny tac/chatsvc.tac: the chat server with open login and the default
# rooms, on loopback (tcp:11021) or on the endpoint in $CHATSVC_LISTEN (open
# login elsewhere than loopback refuses to start unless given
# open_login_anywhere=True).
import os

from twisted.application import service
from twisted.internet import reactor

from chatsvc import ChatConfig, NetConfig, chat_service, exit_cleanly_on_signals

application = service.Application("chatsvc")
listen = os.environ.get(
    "CHATSVC_LISTEN", "tcp:11021:interface=127.0.0.1:backlog=1024"
)
chat_service(listen, NetConfig(), ChatConfig()).setServiceParent(application)
exit_cleanly_on_signals(reactor)  # SIGTERM/SIGINT: graceful stop, exit status 0
