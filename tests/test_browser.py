"""
The chat page in a real headless Chromium (Debian's C{chromium} and
C{chromium-driver}, driven by Selenium; nothing is downloaded): browser users
and a TCP user chat in one room.

The browsers are driven from threads, so that the server under test keeps
running in the test's reactor. Screenshots of the page are saved in
C{$CHATSVC_ARTIFACTS/browser} (default: the system's temporary directory).
If Chromium cannot start, the tests fail and say why.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from chatsvc.content.chat import ChatConfig
from chatsvc.host.services import ChatService, chat_service
from chatsvc.host.settings import HostConfig
from chatsvc.net.config import NetConfig
from chatsvc.protocol import (
    ChatNotify,
    NewUser,
    PacketId,
    Response,
    UserLeft,
    UserList,
    chat_request,
    enter_room_request,
    login_request,
)
from tests.integration.base import LOOPBACK, IntegrationTestCase
from tests.support import PacketClient, reactor

CHROMIUM = os.environ.get("CHATSVC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHATSVC_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--lang=en-US",
)
LAPTOP = (1280, 800)
PHONE = (390, 844)
KOREAN = (
    "안녕하세요 여러분 오늘 채팅 서버를 브라우저에서 시험합니다 "
    "모두 잘 보이나요 감사합니다 좋은 하루!"
)
XSS = "<img src=x onerror=alert(1)>"
ROOM = 3

_T = TypeVar("_T")


def artifacts() -> Path:
    """
    The directory the screenshots go to.
    """
    root = os.environ.get("CHATSVC_ARTIFACTS") or os.path.join(
        tempfile.gettempdir(), "chatsvc-artifacts"
    )
    path = Path(root) / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


class Browser:
    """
    One headless Chromium showing the chat page; every call runs in a thread
    and returns a Deferred.
    """

    def __init__(self, driver: Any, profile: str) -> None:
        self.driver = driver
        self._profile = profile

    @classmethod
    def start(cls, size: tuple[int, int]) -> Browser:
        """
        Start Chromium, or raise with the reason it could not start.
        """
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        for path in (CHROMIUM, CHROMEDRIVER):
            if not os.access(path, os.X_OK):
                raise RuntimeError(
                    f"{path} is missing: install Debian's chromium and"
                    " chromium-driver (.ci/run does)"
                )
        profile = tempfile.mkdtemp(prefix="chatsvc-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={size[0]},{size[1]}")
        try:
            driver = webdriver.Chrome(
                service=Service(executable_path=CHROMEDRIVER), options=options
            )
        except Exception as e:
            shutil.rmtree(profile, ignore_errors=True)
            raise RuntimeError(f"Chromium could not start: {e}") from e
        driver.set_window_size(*size)
        return cls(driver, profile)

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)

    def call(self, function: Callable[..., _T], *args: Any) -> Deferred[_T]:
        return deferToThread(function, *args)

    def script(self, source: str, *args: Any) -> Deferred[Any]:
        return self.call(self.driver.execute_script, source, *args)

    def wait(self, condition: str, *args: Any, timeout: float = 20) -> Deferred[Any]:
        """
        Wait until the JavaScript expression C{condition} is true.
        """
        from selenium.webdriver.support.ui import WebDriverWait

        def wait() -> Any:
            try:
                return WebDriverWait(self.driver, timeout, 0.05).until(
                    lambda d: d.execute_script(f"return ({condition});", *args)
                )
            except Exception as e:
                raise AssertionError(
                    f"timed out waiting for {condition} {args!r}; the page says:"
                    f" {self.driver.find_element('tag name', 'body').text!r}"
                ) from e

        return self.call(wait)

    def fill(self, element_id: str, text: str) -> Deferred[None]:
        def fill() -> None:
            element = self.driver.find_element("id", element_id)
            element.clear()
            element.send_keys(text)

        return self.call(fill)

    def click(self, css: str) -> Deferred[None]:
        return self.call(lambda: self.driver.find_element("css selector", css).click())

    def screenshot(self, name: str) -> Deferred[bool]:
        return self.call(self.driver.save_screenshot, str(artifacts() / name))

    def log_lines(self) -> Deferred[list[str]]:
        return self.script(
            "return [...document.querySelectorAll('#log li')].map(li => li.textContent)"
        )

    def members(self) -> Deferred[list[str]]:
        return self.script(
            "return [...document.querySelectorAll('#members li')]"
            ".map(li => li.textContent)"
        )


#: A condition: a chat line's text is C{arguments[0]}.
HAS_LINE = (
    "[...document.querySelectorAll('#log .text')]"
    ".some(t => t.textContent === arguments[0])"
)
#: A condition: a notice in the log ends with C{arguments[0]}.
HAS_NOTICE = (
    "[...document.querySelectorAll('#log li.notice')]"
    ".some(li => li.textContent.endsWith(arguments[0]))"
)


class BrowserTests(IntegrationTestCase):
    timeout = 180

    async def start_server(self, login_timeout: float = 10.0) -> tuple[int, int]:
        self.service: ChatService = chat_service(
            LOOPBACK,
            NetConfig(),
            ChatConfig(chat_rate=0, room_capacity=8, login_timeout=login_timeout),
            host=HostConfig(web=LOOPBACK),
        )
        port = await self.start(self.service)
        assert self.service.web is not None
        web = await self.service.web.listening
        return port, int(web.getHost().port)

    async def browser(self, size: tuple[int, int] = LAPTOP) -> Browser:
        browser = await deferToThread(Browser.start, size)
        self.addCleanup(deferToThread, browser.quit)
        return browser

    async def open_page(self, browser: Browser, url: str) -> None:
        await browser.call(browser.driver.get, url)
        await browser.wait("!document.querySelector('#login-button').disabled")

    async def log_in(self, browser: Browser, user: str) -> None:
        await browser.fill("user", user)
        await browser.fill("password", "pw")
        await browser.click("#login-button")
        await browser.wait("document.body.dataset.phase === 'lobby'")

    async def enter(self, browser: Browser, room: int) -> None:
        await browser.click(f"#room-list button[data-room='{room}']")
        await browser.wait("document.body.dataset.phase === 'room'")

    async def say(self, browser: Browser, text: str) -> None:
        await browser.fill("message", text)
        await browser.click("#send")

    async def tcp_user(self, port: int, user: str) -> PacketClient:
        [client] = await self.connect(port)
        client.send(login_request(user, "pw") + enter_room_request(ROOM))
        await client.wait_until(
            lambda: Response(PacketId.ROOM_ENTER_RESPONSE, 0) in client.events
        )
        return client

    async def test_browsers_and_tcp_chat_in_one_room(self) -> None:
        port, web_port = await self.start_server()
        url = f"http://127.0.0.1:{web_port}/"
        alice, bob = await self.browser(), await self.browser(PHONE)
        await self.open_page(alice, url)
        await alice.screenshot("login-laptop.png")
        await self.open_page(bob, url)
        await self.log_in(alice, "alice")
        await alice.screenshot("lobby-laptop.png")
        await self.log_in(bob, "bob")
        await self.enter(alice, ROOM)
        await self.enter(bob, ROOM)
        carol = await self.tcp_user(port, "carol")
        self.assertIn(UserList(((1, b"alice"), (2, b"bob"))), carol.events)

        for browser in (alice, bob):
            await browser.wait(
                "[...document.querySelectorAll('#members li')].length === 3"
            )
        self.assertEqual(await alice.members(), ["alice (you)", "bob", "carol"])
        self.assertEqual(await bob.members(), ["bob (you)", "alice", "carol"])

        # Browser to everyone, TCP to the browsers.
        await self.say(alice, "hello from a browser")
        await self.say(bob, XSS)
        carol.send(chat_request("hello from a terminal"))
        await self.say(alice, KOREAN)
        for browser in (alice, bob):
            for text in ("hello from a browser", XSS, "hello from a terminal", KOREAN):
                await browser.wait(HAS_LINE, text)
        await carol.wait_until(
            lambda: ChatNotify(b"alice", KOREAN.encode()) in carol.events
        )
        self.assertEqual(len(KOREAN), 55)
        chats = [e for e in carol.events if isinstance(e, ChatNotify)]
        self.assertEqual(
            [(e.user_id, e.message.decode()) for e in chats],
            [
                (b"alice", "hello from a browser"),
                (b"bob", XSS),
                (b"carol", "hello from a terminal"),
                (b"alice", KOREAN),
            ],
        )

        # The markup is shown as text: no element was made of it, nothing ran.
        for browser in (alice, bob):
            self.assertEqual(await browser.script("return document.images.length"), 0)
            lines = await browser.log_lines()
            self.assertTrue(any(line.endswith("bob" + XSS) for line in lines), lines)
        self.assertEqual(
            await alice.script(
                "return [...document.querySelectorAll('#log .sender')]"
                ".map(s => s.textContent)"
            ),
            ["alice", "bob", "carol", "alice"],
        )

        # A user id with a right-to-left override is refused (README: User
        # ids), so it never reaches the page (which would show it visibly).
        [eve] = await self.connect(port)
        eve.send(login_request("eve\u202egnp.exe", "pw") + enter_room_request(ROOM))
        await eve.wait_until(lambda: len(eve.events) == 2)
        self.assertEqual(eve.events[0], Response(PacketId.LOGIN_RESPONSE, 33))
        eve.transport.loseConnection()  # type: ignore[union-attr]
        await eve.lost
        self.assertEqual(await alice.members(), ["alice (you)", "bob", "carol"])

        await alice.screenshot("room-laptop.png")
        await bob.screenshot("room-phone.png")

        # Bob leaves: alice and carol see it.
        await bob.click("#leave")
        await bob.wait("document.body.dataset.phase === 'lobby'")
        await alice.wait("document.querySelectorAll('#members li').length === 2")
        self.assertEqual(await alice.members(), ["alice (you)", "carol"])
        await alice.wait(HAS_NOTICE, "bob left the room.")
        await carol.wait_until(lambda: UserLeft(2) in carol.events)

    async def test_connection_lost_banner_and_reconnect(self) -> None:
        """
        When the connection drops, the page says so and its button brings
        the user back into the room.
        """
        port, web_port = await self.start_server()
        alice = await self.browser()
        await self.open_page(alice, f"http://127.0.0.1:{web_port}/")
        await self.log_in(alice, "alice")
        await self.enter(alice, ROOM)
        carol = await self.tcp_user(port, "carol")
        [session] = [
            s
            for s in self.service.factory.connections.values()
            if s.transport_kind == "websocket"
        ]
        session.transport.abortConnection()  # type: ignore[union-attr]
        await alice.wait("!document.querySelector('#banner').hidden")
        self.assertEqual(
            await alice.script(
                "return document.querySelector('#banner-text').textContent"
            ),
            "The connection to the server was lost.",
        )
        await alice.screenshot("connection-lost.png")
        await carol.wait_until(
            lambda: any(isinstance(e, UserLeft) for e in carol.events)
        )
        await alice.click("#reconnect")
        await alice.wait("document.body.dataset.phase === 'room'")
        await alice.wait("document.querySelector('#banner').hidden")
        await carol.wait_until(
            lambda: sum(isinstance(e, NewUser) for e in carol.events) == 1
        )
        await self.say(alice, "back again")
        await carol.wait_until(
            lambda: ChatNotify(b"alice", b"back again") in carol.events
        )

    async def test_login_after_the_login_timeout(self) -> None:
        """
        A user who takes longer than --login-timeout to type their name still
        logs in: the page connects again, without an error.
        """
        _, web_port = await self.start_server(login_timeout=0.5)
        browser = await self.browser()
        await self.open_page(browser, f"http://127.0.0.1:{web_port}/")
        await deferLater(reactor, 1.5, lambda: None)
        self.assertEqual(self.service.factory.stats.deadlines_missed, 1)
        self.assertTrue(
            await browser.script("return document.querySelector('#banner').hidden")
        )
        await self.log_in(browser, "slow-typist")

    async def test_result_codes_as_sentences(self) -> None:
        """
        A refused request is shown with the terminal client's sentence.
        """
        _, web_port = await self.start_server()
        first, second = await self.browser(), await self.browser()
        for browser in (first, second):
            await self.open_page(browser, f"http://127.0.0.1:{web_port}/")
        await self.log_in(first, "alice")
        await second.fill("user", "alice")
        await second.click("#login-button")
        await second.wait("document.querySelector('#login-error').textContent !== ''")
        self.assertEqual(
            await second.script(
                "return document.querySelector('#login-error').textContent"
            ),
            "login failed: 31 LOGIN_USER_ALREADY (this user is already logged in)",
        )
        await first.fill("room-number", "99")
        await first.click("#enter-form button")
        await first.wait("document.querySelector('#lobby-error').textContent !== ''")
        self.assertEqual(
            await first.script(
                "return document.querySelector('#lobby-error').textContent"
            ),
            "enter failed: 61 ROOM_INVALID_INDEX (no such room)",
        )
