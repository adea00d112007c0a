"""
Chat from a browser: the chat page and the WebSocket endpoint it talks to
(C{twistd -n chatsvc --web ENDPOINT}).
"""

from chatsvc.web.site import OriginPolicy, chat_site

__all__ = ["OriginPolicy", "chat_site"]
