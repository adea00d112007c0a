"""
The one thing pyproject.toml cannot say: chatsvc's optional C helper
(chatsvc/net/_fanout.c, the fan-out's sends) is built on CPython on POSIX
where a C compiler and Python's headers are at hand. Where it cannot be
built, the install goes on without it and chatsvc sends through Python's
sockets.
"""

import os
import platform

from setuptools import Extension, setup

ext_modules = []
if os.name == "posix" and platform.python_implementation() == "CPython":
    ext_modules.append(
        Extension("chatsvc.net._fanout", ["chatsvc/net/_fanout.c"], optional=True)
    )

setup(ext_modules=ext_modules)
