"""
Tests for L{chatsvc.client.cli} and L{chatsvc.client.render}: the terminal
client's command parsing, how it shows server events, its session logic, and
the real C{chatsvc-client} program against a real chat server.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from chatsvc import ChatConfig, NetConfig, chat_service
from chatsvc.client.cli import parse_arguments
from chatsvc.client.commands import (
    HELP_TEXT,
    Enter,
    Help,
    Invalid,
    Leave,
    Quit,
    Say,
    parse_command,
)
from chatsvc.client.render import (
    RESULTS,
    ChatView,
    clean_text,
    describe_result,
    failure_text,
    render_event,
)
from chatsvc.client.session import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    ChatClient,
)
from chatsvc.client.terminal import LineTerminal, Screen
from chatsvc.protocol import (
    MAX_CHAT_MSG_SIZE,
    ChatNotify,
    Echo,
    NewUser,
    Packet,
    PacketId,
    Response,
    Result,
    UnknownPacket,
    UserLeft,
    UserList,
    chat_notify,
    chat_request,
    encode_packet,
    enter_room_request,
    leave_room_request,
    leave_user_notify,
    login_request,
    new_user_notify,
    result_response,
    user_list_notifies,
)

reactor: Any = _reactor

LOGIN = PacketId.LOGIN_RESPONSE
ENTER = PacketId.ROOM_ENTER_RESPONSE
LEAVE = PacketId.ROOM_LEAVE_RESPONSE
CHAT = PacketId.ROOM_CHAT_RESPONSE


class ParseCommandTests(SynchronousTestCase):
    def test_blank_lines_are_ignored(self) -> None:
        for line in ("", "   ", "\r", "\t\n"):
            self.assertIsNone(parse_command(line))

    def test_enter(self) -> None:
        self.assertEqual(parse_command("/enter 3"), Enter(3))
        self.assertEqual(parse_command("/enter   -1 \r"), Enter(-1))
        self.assertEqual(parse_command("/ENTER 7"), Enter(7))
        self.assertEqual(parse_command("/join 2"), Enter(2))

    def test_enter_needs_one_number(self) -> None:
        for line in ("/enter", "/enter x", "/enter 1 2", "/enter 1.5"):
            command = parse_command(line)
            self.assertIsInstance(command, Invalid, line)
            assert isinstance(command, Invalid)
            self.assertIn("usage: /enter", command.reason)

    def test_enter_room_must_fit_int32(self) -> None:
        self.assertEqual(parse_command(f"/enter {2**31 - 1}"), Enter(2**31 - 1))
        command = parse_command(f"/enter {2**31}")
        self.assertIsInstance(command, Invalid)
        assert isinstance(command, Invalid)
        self.assertIn("int32", command.reason)

    def test_commands_without_arguments(self) -> None:
        self.assertEqual(parse_command("/leave"), Leave())
        self.assertEqual(parse_command("/quit"), Quit())
        self.assertEqual(parse_command("/exit"), Quit())
        self.assertEqual(parse_command("/help"), Help())
        self.assertEqual(
            parse_command("/leave now"), Invalid("/leave takes no arguments")
        )

    def test_unknown_command(self) -> None:
        command = parse_command("/dance wildly")
        self.assertEqual(
            command, Invalid("unknown command /dance; /help lists the commands")
        )

    def test_chat_message(self) -> None:
        self.assertEqual(parse_command("hello there"), Say(b"hello there"))
        self.assertEqual(parse_command("  spaced  \r\n"), Say(b"  spaced  "))
        self.assertEqual(parse_command("안녕"), Say("안녕".encode()))

    def test_double_slash_sends_a_slash(self) -> None:
        self.assertEqual(parse_command("//enter 3"), Say(b"/enter 3"))

    def test_message_size_limit_is_in_utf8_bytes(self) -> None:
        self.assertEqual(
            parse_command("x" * MAX_CHAT_MSG_SIZE), Say(b"x" * MAX_CHAT_MSG_SIZE)
        )
        too_long = parse_command("x" * (MAX_CHAT_MSG_SIZE + 1))
        self.assertEqual(
            too_long,
            Invalid(
                "message too long: 257 bytes of UTF-8, the limit is 256; nothing sent"
            ),
        )
        # 86 three-byte characters: 86 characters, 258 bytes.
        self.assertIsInstance(parse_command("한" * 86), Invalid)
        self.assertIsInstance(parse_command("한" * 85), Say)

    def test_nul_is_refused(self) -> None:
        self.assertIsInstance(parse_command("a\0b"), Invalid)


class ParseArgumentsTests(SynchronousTestCase):
    def parse_error(self, argv: list[str]) -> str:
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        with self.assertRaises(SystemExit) as raised:
            parse_arguments(argv)
        self.assertEqual(raised.exception.code, 2)
        return stderr.getvalue()

    def test_defaults(self) -> None:
        self.patch(os, "environ", {})
        options = parse_arguments(["--user", "alice"])
        self.assertEqual(
            (options.user, options.password, options.host, options.port),
            ("alice", "", "127.0.0.1", 11021),
        )

    def test_everything(self) -> None:
        options = parse_arguments(
            ["--user", "bob", "--password", "pw", "--host", "::1", "--port", "9"]
        )
        self.assertEqual(
            (options.user, options.password, options.host, options.port),
            ("bob", "pw", "::1", 9),
        )

    def test_password_from_the_environment(self) -> None:
        self.patch(os, "environ", {"CHATSVC_PASSWORD": "token"})
        self.assertEqual(parse_arguments(["--user", "a"]).password, "token")

    def test_user_is_required(self) -> None:
        self.assertIn("--user", self.parse_error([]))

    def test_user_limits(self) -> None:
        self.assertIn("must not be empty", self.parse_error(["--user", ""]))
        self.assertIn("33 bytes", self.parse_error(["--user", "u" * 33]))
        self.assertIn("36 bytes", self.parse_error(["--user", "한" * 12]))
        parse_arguments(["--user", "u" * 32])

    def test_password_limit(self) -> None:
        error = self.parse_error(["--user", "a", "--password", "p" * 33])
        self.assertIn("--password is 33 bytes", error)

    def test_bad_port(self) -> None:
        self.assertIn(
            "not in 1..65535", self.parse_error(["--user", "a", "--port", "0"])
        )
        self.assertIn("not a port", self.parse_error(["--user", "a", "--port", "x"]))


class DescribeResultTests(SynchronousTestCase):
    def test_names_match_the_protocol(self) -> None:
        for result in Result:
            self.assertEqual(RESULTS[result][0], result.name)

    def test_known_code(self) -> None:
        self.assertEqual(
            describe_result(33),
            "33 LOGIN_USER_INVALID_PW (unknown user or wrong password, or the"
            " server could not check the password)",
        )

    def test_meaning_depends_on_the_request(self) -> None:
        self.assertEqual(
            describe_result(61, ENTER), "61 ROOM_INVALID_INDEX (no such room)"
        )
        self.assertEqual(
            describe_result(61, LEAVE), "61 ROOM_INVALID_INDEX (you are not in a room)"
        )

    def test_unknown_code(self) -> None:
        self.assertEqual(describe_result(999), "999 (unknown result code)")

    def test_failure_text(self) -> None:
        self.assertEqual(
            failure_text(Response(ENTER, 54)),
            "enter failed: 54 ENTER_ROOM_FULL_USER (room is full)",
        )
        self.assertEqual(
            failure_text(Response(LOGIN, 33)),
            "login failed: 33 LOGIN_USER_INVALID_PW (unknown user or wrong"
            " password, or the server could not check the password)",
        )


class CleanTextTests(SynchronousTestCase):
    def test_plain_text_unchanged(self) -> None:
        self.assertEqual(clean_text("héllo, 世界 🙂".encode()), "héllo, 世界 🙂")

    def test_invalid_utf8_replaced(self) -> None:
        self.assertEqual(clean_text(b"a\xffb"), "a\ufffdb")

    def test_control_characters_replaced(self) -> None:
        self.assertEqual(
            clean_text(b"\x1b[2Jfake\r\n<admin> hi\x07"),
            "\ufffd[2Jfake\ufffd\ufffd<admin> hi\ufffd",
        )

    def test_format_and_separator_characters_shown(self) -> None:
        # A zero-width space cannot make "admin\u200b" pass for "admin", a
        # bidi override cannot turn "txt.\u202eexe.pdf" around, a line
        # separator cannot forge a line.
        self.assertEqual(clean_text("admin\u200b".encode()), "admin<U+200B>")
        self.assertEqual(
            clean_text("txt.\u202eexe.pdf".encode()), "txt.<U+202E>exe.pdf"
        )
        self.assertEqual(
            clean_text("a\u2028<admin> b\u2029c\ufeff".encode()),
            "a<U+2028><admin> b<U+2029>c<U+FEFF>",
        )

    def test_other_spaces_kept(self) -> None:
        self.assertEqual(clean_text("a\u00a0b\u3000c".encode()), "a\u00a0b\u3000c")


class RenderEventTests(SynchronousTestCase):
    def render(self, event: Any, **kwargs: Any) -> str | None:
        return render_event(event, {7: "bob", 9: "carol"}, **kwargs)

    def test_chat(self) -> None:
        self.assertEqual(self.render(ChatNotify(b"alice", b"hello")), "<alice> hello")

    def test_new_user(self) -> None:
        self.assertEqual(self.render(NewUser(7, b"bob")), "* bob entered the room")

    def test_user_list(self) -> None:
        event = UserList(((1, b"alice"), (3, b"carol")))
        self.assertEqual(self.render(event), "* users here: alice, carol")

    def test_empty_room(self) -> None:
        self.assertEqual(self.render(UserList(())), "* nobody else is here")

    def test_spoofing_user_ids_are_shown(self) -> None:
        self.assertEqual(
            self.render(ChatNotify("admin\u200b".encode(), "hi\u2028".encode())),
            "<admin<U+200B>> hi<U+2028>",
        )
        self.assertEqual(
            self.render(NewUser(5, "\u202enimda".encode())),
            "* <U+202E>nimda entered the room",
        )
        self.assertEqual(
            self.render(UserList(((1, "bo\u200db".encode()),))),
            "* users here: bo<U+200D>b",
        )

    def test_no_such_room_names_the_rooms(self) -> None:
        line = self.render(Response(ENTER, 61), room=12)
        assert line is not None
        self.assertTrue(
            line.startswith(
                "! enter failed: 61 ROOM_INVALID_INDEX (no such room): there is"
                " no room 12 on this server"
            ),
            line,
        )
        self.assertIn("rooms 0 to 9", line)

    def test_user_left(self) -> None:
        self.assertEqual(self.render(UserLeft(7)), "* bob left the room")
        self.assertEqual(self.render(UserLeft(8)), "* user #8 left the room")

    def test_failed_responses(self) -> None:
        self.assertEqual(
            self.render(Response(ENTER, 54)),
            "! enter failed: 54 ENTER_ROOM_FULL_USER (room is full)",
        )
        self.assertEqual(
            self.render(Response(CHAT, 63)),
            "! chat failed: 63 ROOM_TOO_MANY_PACKET (sending too fast; slow down)",
        )

    def test_successful_responses(self) -> None:
        self.assertEqual(self.render(Response(LOGIN, 0)), "* logged in")
        self.assertEqual(
            self.render(Response(ENTER, 0), room=3), "* you entered room 3"
        )
        self.assertEqual(self.render(Response(ENTER, 0)), "* you entered the room")
        self.assertEqual(self.render(Response(LEAVE, 0), room=3), "* you left room 3")
        self.assertIsNone(self.render(Response(CHAT, 0)))

    def test_echo_and_unknown(self) -> None:
        self.assertEqual(self.render(Echo(b"ping")), "* echo: ping")
        self.assertEqual(
            self.render(UnknownPacket(Packet(999, 0, b"xy"))),
            "? packet id 999 this client does not know (2 bytes)",
        )


class ChatViewTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.view = ChatView(b"alice")

    def test_a_visit_to_a_room(self) -> None:
        view = self.view
        view.sent_enter(4)
        self.assertFalse(view.idle)
        self.assertEqual(view.receive(Response(ENTER, 0)), ["* you entered room 4"])
        self.assertEqual(view.room, 4)
        self.assertEqual(
            view.receive(UserList(((2, b"bob"), (3, b"carol")))),
            ["* users here: bob, carol"],
        )
        self.assertEqual(view.receive(NewUser(5, b"dave")), ["* dave entered the room"])
        self.assertEqual(view.receive(UserLeft(3)), ["* carol left the room"])
        self.assertEqual(view.receive(UserLeft(5)), ["* dave left the room"])
        self.assertEqual(view.names, {2: "bob"})
        view.sent_leave()
        self.assertEqual(view.receive(Response(LEAVE, 0)), ["* you left room 4"])
        self.assertIsNone(view.room)
        self.assertEqual(view.names, {})
        self.assertTrue(view.idle)

    def test_failed_enter(self) -> None:
        self.view.sent_enter(1)
        self.assertEqual(
            self.view.receive(Response(ENTER, 54)),
            ["! enter failed: 54 ENTER_ROOM_FULL_USER (room is full)"],
        )
        self.assertIsNone(self.view.room)
        self.assertTrue(self.view.idle)

    def test_pipelined_requests_match_in_order(self) -> None:
        view = self.view
        view.sent_enter(1)
        view.sent_leave()
        view.sent_enter(2)
        self.assertEqual(view.receive(Response(ENTER, 0)), ["* you entered room 1"])
        self.assertEqual(view.receive(Response(LEAVE, 0)), ["* you left room 1"])
        self.assertEqual(view.receive(Response(ENTER, 0)), ["* you entered room 2"])
        self.assertTrue(view.idle)

    def test_chat_waits_for_its_own_notify(self) -> None:
        view = self.view
        view.sent_chat()
        self.assertEqual(view.receive(Response(CHAT, 0)), [])
        self.assertFalse(view.idle)
        self.assertEqual(view.receive(ChatNotify(b"bob", b"hi")), ["<bob> hi"])
        self.assertFalse(view.idle)
        self.assertEqual(view.receive(ChatNotify(b"alice", b"yo")), ["<alice> yo"])
        self.assertTrue(view.idle)

    def test_failed_chat_expects_no_notify(self) -> None:
        self.view.sent_chat()
        self.view.receive(Response(CHAT, 81))
        self.assertTrue(self.view.idle)

    def test_leaving_forgets_missing_echoes(self) -> None:
        view = self.view
        view.sent_enter(1)
        view.receive(Response(ENTER, 0))
        view.sent_chat()
        view.sent_leave()
        view.receive(Response(CHAT, 0))
        view.receive(Response(LEAVE, 0))
        self.assertTrue(view.idle)


class FakeStdio(StringTransport):
    """
    Standard input and output for a L{LineTerminal}: output collected, and
    C{loseConnection} closes at once, as a flushed stdout would.
    """

    def __init__(self) -> None:
        super().__init__()
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def loseConnection(self) -> None:
        if not self.disconnecting:
            super().loseConnection()
            self.protocol.connectionLost(Failure(ConnectionDone()))


class ChatClientTests(SynchronousTestCase):
    """
    The session logic, driven by hand: fake clock, string transports.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.errors = io.StringIO()
        self.stdio = FakeStdio()
        self.client = ChatClient(
            self.clock,
            "alice",
            "secret",
            self.start_terminal,
            timeout=5,
            quit_grace=2,
            errors=self.errors,
        )
        self.server = StringTransport()
        self.client.connection.makeConnection(self.server)
        self.exit_codes: list[int] = []
        self.client.done.addCallback(self.exit_codes.append)
        self.client.connected()

    def start_terminal(
        self,
        on_line: Callable[[str], None],
        on_end: Callable[[], None],
        on_interrupt: Callable[[], object],
    ) -> Screen:
        self.screen_interrupt = on_interrupt
        terminal = LineTerminal(on_line, on_end)
        self.stdio.protocol = terminal
        terminal.makeConnection(self.stdio)
        return terminal

    def receive(self, *packets: bytes) -> None:
        self.client.connection.dataReceived(b"".join(packets))

    def type_lines(self, *lines: str) -> None:
        self.stdio.protocol.dataReceived(
            b"".join(line.encode() + b"\n" for line in lines)
        )

    def shown(self) -> list[str]:
        return self.stdio.value().decode().splitlines()

    def sent(self) -> bytes:
        data = self.server.value()
        self.server.clear()
        return data

    def server_closes(self) -> None:
        self.client.connection.connectionLost(Failure(ConnectionDone()))

    def log_in(self) -> None:
        self.sent()
        self.receive(result_response(LOGIN, Result.NONE))

    def test_sends_login(self) -> None:
        self.assertEqual(self.sent(), login_request("alice", "secret"))
        self.assertIsNone(self.client.screen)

    def test_login_accepted(self) -> None:
        self.log_in()
        self.assertEqual(self.shown(), ["logged in as alice"])
        self.assertEqual(self.exit_codes, [])

    def test_login_refused(self) -> None:
        self.receive(result_response(LOGIN, Result.LOGIN_USER_INVALID_PW))
        self.assertIsNone(self.client.screen)
        self.assertTrue(self.server.disconnecting)
        self.assertEqual(self.exit_codes, [EXIT_FAILED])
        self.assertEqual(
            self.errors.getvalue(),
            "chatsvc-client: login failed: 33 LOGIN_USER_INVALID_PW"
            " (unknown user or wrong password, or the server could not check"
            " the password)\n",
        )

    def test_login_unanswered(self) -> None:
        self.clock.advance(4.9)
        self.assertEqual(self.exit_codes, [])
        self.clock.advance(0.2)
        self.assertTrue(self.server.disconnecting)
        self.assertEqual(self.exit_codes, [EXIT_FAILED])
        self.assertIn("no answer to the login within 5 seconds", self.errors.getvalue())

    def test_something_else_before_the_login_answer(self) -> None:
        self.receive(chat_notify(b"x", b"y"))
        self.assertEqual(self.exit_codes, [EXIT_FAILED])
        self.assertIn("before answering the login", self.errors.getvalue())

    def test_commands_become_requests(self) -> None:
        self.log_in()
        self.type_lines("/enter 2", "hello", "/leave")
        self.assertEqual(
            self.sent(),
            enter_room_request(2) + chat_request(b"hello") + leave_room_request(),
        )

    def test_local_errors_send_nothing(self) -> None:
        self.log_in()
        self.type_lines("x" * 300, "/nope", "")
        self.assertEqual(self.sent(), b"")
        self.assertEqual(
            self.shown()[1:],
            [
                "! message too long: 300 bytes of UTF-8, the limit is 256;"
                " nothing sent",
                "! unknown command /nope; /help lists the commands",
            ],
        )

    def test_help(self) -> None:
        self.log_in()
        self.type_lines("/help")
        self.assertEqual(self.shown()[1:], HELP_TEXT.splitlines())

    def test_events_are_shown(self) -> None:
        self.log_in()
        self.type_lines("/enter 1")
        self.receive(
            result_response(ENTER, Result.NONE),
            *user_list_notifies([(2, b"bob")]),
            new_user_notify(3, b"carol"),
            chat_notify(b"bob", "héllo".encode()),
            leave_user_notify(2),
            result_response(CHAT, Result.CHAT_ROOM_INVALID_ROOM_NUMBER),
        )
        self.assertEqual(
            self.shown()[1:],
            [
                "* you entered room 1",
                "* users here: bob",
                "* carol entered the room",
                "<bob> héllo",
                "* bob left the room",
                "! chat failed: 81 CHAT_ROOM_INVALID_ROOM_NUMBER"
                " (you are not in a room)",
            ],
        )

    def test_quit_when_idle_closes_at_once(self) -> None:
        self.log_in()
        self.type_lines("/quit")
        self.assertTrue(self.stdio.paused)
        self.assertTrue(self.server.disconnecting)
        self.server_closes()
        self.assertEqual(self.exit_codes, [EXIT_OK])
        self.assertEqual(self.errors.getvalue(), "")

    def test_quit_waits_for_answers(self) -> None:
        self.log_in()
        self.type_lines("/enter 1", "hi", "/quit", "ignored after quit")
        self.sent()
        self.assertFalse(self.server.disconnecting)
        self.receive(result_response(ENTER, Result.NONE), result_response(CHAT, 0))
        self.assertFalse(self.server.disconnecting)
        self.receive(chat_notify(b"alice", b"hi"))
        self.assertTrue(self.server.disconnecting)
        self.assertEqual(self.sent(), b"")
        self.assertEqual(self.shown()[-1], "<alice> hi")

    def test_quit_waits_a_little_at_most(self) -> None:
        self.log_in()
        self.type_lines("/enter 1")
        self.stdio.protocol.readConnectionLost()  # end of input
        self.clock.advance(1.9)
        self.assertFalse(self.server.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(self.server.disconnecting)
        self.server_closes()
        self.assertEqual(self.exit_codes, [EXIT_OK])

    def test_server_closes(self) -> None:
        self.log_in()
        self.server_closes()
        self.assertTrue(self.stdio.disconnecting)
        self.assertEqual(self.exit_codes, [EXIT_FAILED])
        self.assertEqual(
            self.errors.getvalue(), "chatsvc-client: the server closed the connection\n"
        )

    def test_protocol_error(self) -> None:
        self.log_in()
        self.receive(encode_packet(LOGIN, b"\x00\x00") + b"\x02\x00junk")
        self.assertTrue(self.server.disconnecting)
        self.server_closes()
        self.assertEqual(self.exit_codes, [EXIT_FAILED])
        self.assertIn("protocol error from the server", self.errors.getvalue())

    def test_interrupted(self) -> None:
        self.log_in()
        self.type_lines("/enter 1")
        flushed = self.client.interrupt()
        assert flushed is not None
        self.assertTrue(self.server.disconnecting)
        self.assertEqual(self.exit_codes, [EXIT_INTERRUPTED])
        self.assertIsNone(self.successResultOf(flushed))
        self.assertIsNone(self.client.interrupt())
        self.assertEqual(self.errors.getvalue(), "")

    def test_interrupted_from_the_screen(self) -> None:
        # Ctrl-C typed on the interactive console.
        self.log_in()
        self.screen_interrupt()
        self.assertTrue(self.server.disconnecting)
        self.assertEqual(self.exit_codes, [EXIT_INTERRUPTED])

    def test_output_closed_ends_the_session(self) -> None:
        self.log_in()
        self.stdio.protocol.writeConnectionLost()
        self.assertTrue(self.server.disconnecting)
        self.server_closes()
        self.assertEqual(self.exit_codes, [EXIT_OK])


# --- the real program against a real server ---------------------------------

WAIT = 15.0
REPO = Path(__file__).resolve().parent.parent


def _client_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


class ClientProcess(ProcessProtocol):
    """
    One C{python -m chatsvc.client.cli} child: its output collected, lines
    written to its input, waits bounded by L{WAIT}.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.out = b""
        self.err = b""
        self.ended: Deferred[int] = Deferred()
        self._waiting: list[tuple[Callable[[], bool], Deferred[None]]] = []

    @property
    def output(self) -> str:
        return self.out.decode("utf-8", "replace")

    def outReceived(self, data: bytes) -> None:
        self.out += data
        self._check()

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(reason.value.exitCode)
        waiting, self._waiting = self._waiting, []
        for _, waiter in waiting:
            waiter.errback(AssertionError(f"{self.name} ended early\n{self.report()}"))

    def report(self) -> str:
        return (
            f"--- {self.name} stdout:\n{self.output}"
            f"--- {self.name} stderr:\n{self.err.decode('utf-8', 'replace')}"
        )

    def send(self, *lines: str) -> None:
        assert self.transport is not None
        for line in lines:
            self.transport.write(line.encode("utf-8") + b"\n")

    def type(self, keys: str) -> None:
        """
        Type on the client's terminal (C{\\r} is Enter).
        """
        assert self.transport is not None
        self.transport.write(keys.encode("utf-8"))

    def end_input(self) -> None:
        assert self.transport is not None
        self.transport.closeStdin()  # type: ignore[attr-defined]

    async def expect(self, text: str) -> None:
        """
        Wait until C{text} appears in the output.
        """
        await self._until(lambda: text in self.output, f"{text!r} on stdout")

    async def exit_code(self) -> int:
        """
        Wait for the process to end; return its exit code.
        """
        ended: Deferred[int] = Deferred()
        self.ended.addBoth(lambda code: (ended.callback(code), code)[1])
        ended.addTimeout(WAIT, reactor)
        try:
            return await ended
        except TimeoutError:
            raise AssertionError(f"{self.name} did not exit\n{self.report()}") from None

    async def _until(self, condition: Callable[[], bool], what: str) -> None:
        if condition():
            return
        if self.ended.called:
            raise AssertionError(f"{self.name} ended before {what}\n{self.report()}")
        waiter: Deferred[None] = Deferred()
        entry = (condition, waiter)
        self._waiting.append(entry)
        waiter.addTimeout(WAIT, reactor)
        try:
            await waiter
        except TimeoutError:
            raise AssertionError(
                f"no {what} from {self.name} within {WAIT}s\n{self.report()}"
            ) from None
        finally:
            if entry in self._waiting:
                self._waiting.remove(entry)

    def _check(self) -> None:
        for entry in list(self._waiting):
            condition, waiter = entry
            if condition():
                self._waiting.remove(entry)
                waiter.callback(None)


class ClientProgramTests(TestCase):
    """
    C{chatsvc-client} as a child process, against the chat server running in
    this process.
    """

    timeout = 90

    def setUp(self) -> None:
        self.processes: list[ClientProcess] = []
        self.addCleanup(self._stop_processes)

    async def start_server(self, chat: ChatConfig) -> int:
        service = chat_service(
            "tcp:0:interface=127.0.0.1", NetConfig(), chat, reactor=reactor
        )
        service.startService()
        self.addCleanup(self._stop_server, service)
        port = await service.listener.listening
        return int(port.getHost().port)

    async def _stop_server(self, service: Any) -> None:
        await service.stopService()
        # Let the server notice its clients are gone, so the reactor is clean.
        for _ in range(int(WAIT / 0.05)):
            if not service.factory.connections:
                break
            await deferLater(reactor, 0.05, lambda: None)
        await deferLater(reactor, 0, lambda: None)

    def spawn(
        self, *args: str, name: str = "client", terminal: bool = False
    ) -> ClientProcess:
        """
        Start C{chatsvc-client}; with C{terminal}, on a pseudo-terminal (its
        interactive console) instead of pipes.
        """
        process = ClientProcess(name)
        env = _client_env()
        if terminal:
            # A terminal that does not answer cursor position requests.
            env.update(TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
        reactor.spawnProcess(
            process,
            sys.executable,
            [sys.executable, "-m", "chatsvc.client.cli", *args],
            env=env,
            path=str(REPO),
            usePTY=terminal,
        )
        self.processes.append(process)
        return process

    def client(self, port: int, user: str) -> ClientProcess:
        return self.spawn(
            "--user", user, "--port", str(port), "--timeout", str(WAIT), name=user
        )

    async def _stop_processes(self) -> None:
        for process in self.processes:
            if not process.ended.called and process.transport is not None:
                process.transport.signalProcess("KILL")
        for process in self.processes:
            await process.exit_code()

    async def test_two_users_chat(self) -> None:
        port = await self.start_server(ChatConfig(room_capacity=2))
        alice = self.client(port, "alice")
        await alice.expect("logged in as alice\n")
        alice.send("/enter 1")
        await alice.expect("* you entered room 1\n* nobody else is here\n")

        bob = self.client(port, "bob")
        await bob.expect("logged in as bob\n")
        bob.send("/enter 1")
        await bob.expect("* you entered room 1\n* users here: alice\n")
        await alice.expect("* bob entered the room\n")

        bob.send("hello, 앨리스")
        await alice.expect("<bob> hello, 앨리스\n")
        await bob.expect("<bob> hello, 앨리스\n")
        alice.send("hi bob", "/enter 2")
        await bob.expect("<alice> hi bob\n")
        await alice.expect(
            "! enter failed: 52 ENTER_ROOM_INVALID_USER_STATUS"
            " (already in a room; /leave first)\n"
        )

        carol = self.client(port, "carol")
        await carol.expect("logged in as carol\n")
        carol.send("/enter 1", "anyone?", "x" * 257)
        await carol.expect("! enter failed: 54 ENTER_ROOM_FULL_USER (room is full)\n")
        await carol.expect(
            "! chat failed: 81 CHAT_ROOM_INVALID_ROOM_NUMBER (you are not in a room)\n"
        )
        await carol.expect("! message too long: 257 bytes")
        carol.send("/quit")
        self.assertEqual(await carol.exit_code(), EXIT_OK)

        bob.send("/leave")
        await bob.expect("* you left room 1\n")
        await alice.expect("* bob left the room\n")
        bob.send("/quit")
        self.assertEqual(await bob.exit_code(), EXIT_OK)

        # The end of the input quits too, after the answers already due.
        alice.send("bye")
        alice.end_input()
        self.assertEqual(await alice.exit_code(), EXIT_OK)
        self.assertTrue(alice.output.endswith("<alice> bye\n"), alice.report())
        self.assertNotIn("carol", alice.output)
        for process in (alice, bob, carol):
            self.assertEqual(process.err, b"", process.report())

    async def test_typing_while_messages_arrive(self) -> None:
        if not hasattr(os, "openpty"):
            raise SkipTest("needs a pseudo-terminal (POSIX)")
        port = await self.start_server(ChatConfig())
        alice = self.spawn(
            "--user", "alice", "--port", str(port), "--timeout", str(WAIT),
            name="alice", terminal=True,
        )  # fmt: skip
        await alice.expect("logged in as alice")
        alice.type("/enter 1\r")
        await alice.expect("* nobody else is here")
        bob = self.client(port, "bob")
        bob.send("/enter 1")
        await alice.expect("* bob entered the room")

        alice.type("I am in the mid")
        await alice.expect("I am in the mid")
        bob.send("hello alice")
        await alice.expect("<bob> hello alice\r\n")
        # The message is printed on its own line, and the half-typed input is
        # drawn again below it, whole.
        await alice._until(
            lambda: (
                alice.output.rfind("I am in the mid")
                > alice.output.find("<bob> hello alice")
            ),
            "the input line drawn again below the message",
        )
        self.assertNotIn("mid<bob>", alice.output)

        alice.type("dle\r")
        await bob.expect("<alice> I am in the middle\n")
        await alice.expect("<alice> I am in the middle\r\n")
        self.assertEqual(alice.output.count("<alice> I am in the middle"), 1)
        self.assertEqual(bob.output.count("hello alice"), 1)

        alice.type("\x03")  # Ctrl-C
        self.assertEqual(await alice.exit_code(), EXIT_INTERRUPTED)
        # (bob's message makes the server end a turn, which delivers the leave.)
        bob.send("bye")
        await bob.expect("* alice left the room\n")
        bob.end_input()
        self.assertEqual(await bob.exit_code(), EXIT_OK)

    async def test_login_refused(self) -> None:
        port = await self.start_server(ChatConfig())
        alice = self.client(port, "alice")
        await alice.expect("logged in as alice\n")
        again = self.client(port, "alice")
        self.assertEqual(await again.exit_code(), EXIT_FAILED)
        self.assertEqual(again.out, b"")
        self.assertEqual(
            again.err.decode(),
            "chatsvc-client: login failed: 31 LOGIN_USER_ALREADY"
            " (this user is already logged in)\n",
        )
        alice.end_input()
        self.assertEqual(await alice.exit_code(), EXIT_OK)

    async def test_server_unreachable(self) -> None:
        listening = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        port = listening.getHost().port
        await listening.stopListening()
        process = self.client(port, "alice")
        self.assertEqual(await process.exit_code(), EXIT_UNREACHABLE)
        self.assertEqual(process.out, b"")
        error = process.err.decode()
        self.assertTrue(
            error.startswith(f"chatsvc-client: cannot connect to 127.0.0.1:{port}: "),
            error,
        )
        self.assertEqual(error.count("\n"), 1, error)
        self.assertNotIn("Traceback", error)
