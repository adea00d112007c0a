"""
Chat from a browser: the chat page and the WebSocket endpoint it talks to
(C{twistd -n chatsvc --web ENDPOINT}); see L{chatsvc.web.site}.
"""
