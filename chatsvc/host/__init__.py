"""
The host layer (the tutorial's "Host"): options, services, twistd plugins and
the wiring of the network and content layers.

Nothing is re-exported here: import from the modules (L{chatsvc.host.services},
L{chatsvc.host.applications}, ...), or the stages from L{chatsvc}.
"""
