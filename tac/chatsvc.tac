# twistd -ny tac/chatsvc.tac: the chat server with open login and the default
# rooms, on tcp:11021 or on the endpoint in $CHATSVC_LISTEN.
import os

from twisted.application import service

from chatsvc import ChatConfig, NetConfig, chat_service

application = service.Application("chatsvc")
listen = os.environ.get("CHATSVC_LISTEN", "tcp:11021")
chat_service(listen, NetConfig(), ChatConfig()).setServiceParent(application)
