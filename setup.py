"""
The one thing pyproject.toml cannot say: chatsvc's optional C helpers are
built on CPython on POSIX where a C compiler and Python's headers are at
hand: chatsvc/net/_fanout.c (the fan-out's sends) and
chatsvc/protocol/_framing.c (splitting received bytes into packets). Where
they cannot be built, the install goes on without them and chatsvc does the
same in Python.
"""

import os
import platform

from setuptools import Extension, setup

ext_modules: list[Extension] = []
if os.name == "posix" and platform.python_implementation() == "CPython":
    ext_modules += [
        Extension("chatsvc.net._fanout", ["chatsvc/net/_fanout.c"], optional=True),
        Extension(
            "chatsvc.protocol._framing", ["chatsvc/protocol/_framing.c"], optional=True
        ),
    ]

setup(ext_modules=ext_modules)
