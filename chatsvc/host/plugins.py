"""
The twistd plugins: C{twistd -n chatsvc}, C{chatsvc-echo}, C{chatsvc-sendqueue}.

A plugin names its options class and service factory by their dotted names
and imports them only when twistd runs it: twistd loads every plugin module
to list its commands and reactors, and a plugin module that imported the
services would install the default reactor before C{--reactor} could choose
one.
"""

from __future__ import annotations

from twisted.application.service import IService, IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from twisted.python.reflect import namedAny
from zope.interface import implementer


@implementer(IServiceMaker, IPlugin)
class StageMaker:
    """
    Makes one stage's service from its options.
    """

    def __init__(self, tapname: str, description: str, options: str, make: str) -> None:
        """
        @param options: the dotted name of the stage's L{usage.Options} class.
        @param make: the dotted name of the function that makes its service
            from those options.
        """
        self.tapname = tapname
        self.description = description
        self._options = options
        self._make = make

    def options(self) -> usage.Options:
        """
        Return a new instance of the stage's options.
        """
        options: usage.Options = namedAny(self._options)()
        return options

    def makeService(self, options: usage.Options) -> IService:
        service: IService = namedAny(self._make)(options)
        return service
