# twistd -ny tac/echo.tac: the echo stage (tutorial steps 1-3 and 7) with the
# default limits, on loopback (tcp:11021) or on the endpoint in
# $CHATSVC_LISTEN.
import os

from twisted.application import service
from twisted.internet import reactor

from chatsvc import NetConfig, echo_service, exit_cleanly_on_signals

application = service.Application("chatsvc-echo")
listen = os.environ.get(
    "CHATSVC_LISTEN", "tcp:11021:interface=127.0.0.1:backlog=1024"
)
echo_service(listen, NetConfig()).setServiceParent(application)
exit_cleanly_on_signals(reactor)  # SIGTERM/SIGINT: graceful stop, exit status 0
