"""
The twistd plugins: C{twistd -n chatsvc}, C{chatsvc-echo}, C{chatsvc-sendqueue}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import IService, IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


@implementer(IServiceMaker, IPlugin)
class StageMaker:
    """
    Makes one stage's service from its options.
    """

    def __init__(
        self,
        tapname: str,
        description: str,
        options: type[usage.Options],
        make: Callable[[Any], IService],
    ) -> None:
        self.tapname = tapname
        self.description = description
        self.options = options
        self._make = make

    def makeService(self, options: usage.Options) -> IService:
        return self._make(options)
