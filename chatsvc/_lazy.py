# -*- test-case-name: tests.test_imports -*-
"""
Names a package re-exports but imports only when first used (PEP 562), so
that importing the package loads none of the modules behind them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, where: Mapping[str, str], exported: Collection[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """
    Return the C{__getattr__} and C{__dir__} of C{package}: name C{n} comes
    from the module C{where[n]} on first use and is then kept in the
    package's namespace.
    """
    namespace = sys.modules[package].__dict__

    def getattr_(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(exported))

    return getattr_, dir_
