# twistd -ny tac/chatsvc.tac: the chat server with open login and the default
# rooms, on tcp:11021 or on the endpoint in $CHATSVC_LISTEN.
import os

from twisted.application import service
from twisted.internet import reactor

from chatsvc import ChatConfig, NetConfig, chat_service, exit_cleanly_on_signals

application = service.Application("chatsvc")
listen = os.environ.get("CHATSVC_LISTEN", "tcp:11021:backlog=1024")
chat_service(listen, NetConfig(), ChatConfig()).setServiceParent(application)
exit_cleanly_on_signals(reactor)  # SIGTERM/SIGINT: graceful stop, exit status 0
