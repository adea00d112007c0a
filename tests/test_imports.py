"""
Importing the pure layers starts nothing: checked in a fresh interpreter,
since this one has long imported Twisted.
"""

from __future__ import annotations

import json
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

_REPORT = """
import json, sys
import {module}
print(json.dumps(sorted(sys.modules)))
"""


def modules_loaded_by(module: str) -> set[str]:
    """
    Return the modules a fresh interpreter has loaded after importing C{module}.
    """
    output = subprocess.run(
        [sys.executable, "-c", _REPORT.format(module=module)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(json.loads(output))


class ImportTests(SynchronousTestCase):
    def assertNoTwisted(self, module: str) -> None:
        loaded = modules_loaded_by(module)
        self.assertIn(module, loaded)
        self.assertEqual(
            sorted(m for m in loaded if m.split(".")[0] in ("twisted", "zope")), []
        )

    def test_chatsvc(self) -> None:
        """
        C{import chatsvc} loads no Twisted; its stages are imported on use.
        """
        self.assertNoTwisted("chatsvc")

    def test_protocol(self) -> None:
        self.assertNoTwisted("chatsvc.protocol")

    def test_content(self) -> None:
        self.assertNoTwisted("chatsvc.content")

    def test_rooms(self) -> None:
        self.assertNoTwisted("chatsvc.content.rooms")

    def test_net_package(self) -> None:
        self.assertNoTwisted("chatsvc.net")

    def test_host_package(self) -> None:
        self.assertNoTwisted("chatsvc.host")

    def test_load_tester_bot(self) -> None:
        """
        The load tester's bots run on asyncio: no reactor is installed.
        """
        loaded = modules_loaded_by("chatsvc.loadtest.bot")
        self.assertIn("chatsvc.loadtest.bot", loaded)
        self.assertNotIn("twisted.internet.reactor", loaded)

    def test_twistd_plugins(self) -> None:
        """
        twistd loads the plugin module to list commands and reactors, before
        C{--reactor} installs one: the module installs none itself.
        """
        loaded = modules_loaded_by("twisted.plugins.chatsvc_plugins")
        self.assertIn("twisted.plugins.chatsvc_plugins", loaded)
        self.assertNotIn("twisted.internet.reactor", loaded)

    def test_lazy_names_resolve(self) -> None:
        """
        Every name the packages export resolves, to the object it names.
        """
        import chatsvc
        import chatsvc.net
        from chatsvc.host.services import chat_service
        from chatsvc.net.session import Session

        for package in (chatsvc, chatsvc.net):
            for name in package.__all__:
                self.assertIsNotNone(getattr(package, name))
        self.assertIs(chatsvc.chat_service, chat_service)
        self.assertIs(chatsvc.net.Session, Session)
        with self.assertRaises(AttributeError):
            chatsvc.no_such_name  # noqa: B018
