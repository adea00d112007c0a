"""
Integration tests: real TCP connections over loopback, on whatever reactor
runs them (epoll natively, IOCP under C{trial --reactor=iocp}).
"""
