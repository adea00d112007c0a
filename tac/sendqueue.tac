# twistd -ny tac/sendqueue.tac: the send-queue stage (tutorial steps 4-6) with
# the default limits, on loopback (tcp:11021) or on the endpoint in
# $CHATSVC_LISTEN.
import os

from twisted.application import service
from twisted.internet import reactor

from chatsvc import NetConfig, exit_cleanly_on_signals, sendqueue_service

application = service.Application("chatsvc-sendqueue")
listen = os.environ.get(
    "CHATSVC_LISTEN", "tcp:11021:interface=127.0.0.1:backlog=1024"
)
sendqueue_service(listen, NetConfig()).setServiceParent(application)
exit_cleanly_on_signals(reactor)  # SIGTERM/SIGINT: graceful stop, exit status 0
