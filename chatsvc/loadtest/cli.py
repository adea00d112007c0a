# -*- test-case-name: tests.test_loadtest -*-
"""
C{chatsvc-bench}: the dummy-client load tester for chatsvc and any server that
speaks the edu_cpp_IOCP tutorial's protocol (the tutorial's step 11, "test with
a dummy client").

    chatsvc-bench chat --port 11021 --users 1000 --rooms 100 --rate 5 --duration 30

Exit codes: 0 when the run passed (nothing lost, duplicated or reordered, no
protocol violation, no connection error); 1 when it did not; 2 for bad
arguments, an unreachable server or too few file descriptors; 130 when
interrupted before any result.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Final, NoReturn

from chatsvc.loadtest.bot import MAX_SERVER_PACKET, MIN_ECHO_SIZE
from chatsvc.loadtest.config import SCENARIOS, RunConfig
from chatsvc.loadtest.report import plot, progress_line, summary_table
from chatsvc.loadtest.wire import MAX_SENDER
from chatsvc.protocol import MAX_USER_ID_LEN, MAX_USER_PW_LEN

PROGRAM: Final = "chatsvc-bench"
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130
DEFAULT_DURATION: Final = {"echo": 10.0, "login": 0.0, "chat": 10.0, "churn": 10.0}
DEFAULT_USERS: Final = {"echo": 100, "login": 100, "chat": 40, "churn": 40}

DESCRIPTION: Final = """\
Load-test a chat server that speaks the edu_cpp_IOCP tutorial's protocol
(chatsvc, or the tutorial's own server) with many bots.

Every second a progress line goes to standard error; at the end a summary
table to standard output. Messages carry sender, sequence number and send
time; the summary counts lost, duplicated and reordered notifies (all must
be 0), every result code other than 0, connection errors and protocol
violations by the server (a bot that sees one reports the packet and stops).
The run fails (exit status 1) if any of them is not 0, or if a bot could not
log in or enter its room. `chatsvc-bench SCENARIO --help` lists the options
of a scenario.
"""

SCENARIO_HELP: Final = {
    "echo": (
        "DEV_ECHO packets: --window in flight per connection (1: ping-pong,"
        " more: pipelined) with --rate 0, or --rate a second; the server must"
        " echo them all, in order (chatsvc: the chatsvc-sendqueue stage)"
    ),
    "login": (
        "a login storm: every user connects, then all log in at once; reports"
        " logins per second; the connections are held --duration s"
    ),
    "chat": (
        "users log in and enter rooms (dealt out in turn); once all are in,"
        " each sends --rate messages a second (0: closed loop, --window in"
        " flight); latency is from a message's send to each member's notify,"
        " and every member must get every message of its room once, in order"
    ),
    "churn": (
        "each user repeats: connect, log in, enter, send --cycle-messages"
        " messages, leave, disconnect"
    ),
}

EPILOG: Final = """\
examples, against a chatsvc server started with its defaults (10 rooms of 4
users, 20 chat messages a second per user):
  twistd -n --pidfile= chatsvc --listen tcp:11021:interface=127.0.0.1
  chatsvc-bench chat --users 40 --rooms 10 --rate 10 --duration 10
  chatsvc-bench churn --users 40 --rooms 10 --duration 10
  chatsvc-bench login --users 5000

against a larger one (tell chatsvc-bench its rooms and their capacity):
  twistd -n --pidfile= chatsvc --rooms 20 --room-capacity 10 --chat-rate 0
  chatsvc-bench chat --users 200 --rooms 20 --server-rooms 20 --room-capacity 10
  chatsvc-bench chat --users 100 --rooms 10 --room-capacity 10 --rate 0 --window 4

echo, against the send-queue stage:
  twistd -n --pidfile= chatsvc-sendqueue --listen tcp:11022:interface=127.0.0.1
  chatsvc-bench echo --port 11022 --users 100 --rate 0 --window 32 --size 64
"""

#: Scenarios that log in, and scenarios whose bots enter rooms.
_LOGGING_IN: Final = ("login", "chat", "churn")
_IN_ROOMS: Final = ("chat", "churn")
_SENDING: Final = ("echo", "chat", "churn")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is not 0 or more")
    return value


def _addresses(text: str) -> tuple[str, ...]:
    addresses = tuple(a.strip() for a in text.split(",") if a.strip())
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise argparse.ArgumentTypeError(f"{address} is not HOST:PORT")
        _port(port)
    return addresses


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number")
    return value


def _add_common(parser: argparse.ArgumentParser, scenario: str) -> None:
    """
    Add the options of C{scenario}: every scenario's, and its own.
    """
    target = parser.add_argument_group("server")
    target.add_argument(
        "--host", default="127.0.0.1", help="server host (default 127.0.0.1)"
    )
    target.add_argument(
        "--port", type=_port, default=11021, help="server port (default 11021)"
    )
    target.add_argument(
        "--connect",
        type=_addresses,
        default=(),
        metavar="HOST:PORT,...",
        help="several servers (the nodes of a cluster) instead of --host and"
        " --port: each room's bots are spread over them in turn",
    )
    users = parser.add_argument_group(
        "users and rooms" if scenario in _IN_ROOMS else "users"
    )
    users.add_argument(
        "--users",
        type=_positive_int,
        default=DEFAULT_USERS[scenario],
        help=f"bots, one connection each (default {DEFAULT_USERS[scenario]}"
        + (
            ": 4 in each of 10 rooms, as a default chatsvc)"
            if scenario in _IN_ROOMS
            else ")"
        ),
    )
    if scenario in _IN_ROOMS:
        _add_rooms(users)
    if scenario in _LOGGING_IN:
        _add_login(parser, users)
    if scenario in _SENDING:
        _add_load(parser, scenario)
    _add_timing(parser, scenario)
    _add_runner(parser, scenario)
    output = parser.add_argument_group("output")
    output.add_argument(
        "--json", type=Path, metavar="FILE", help="write every result here as JSON"
    )
    output.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="draw latency over time and its distribution (needs matplotlib:"
        " pip install 'chatsvc[bench]')",
    )
    output.add_argument("--quiet", "-q", action="store_true", help="no progress lines")


def _add_rooms(users: argparse._ArgumentGroup) -> None:
    users.add_argument(
        "--rooms",
        type=_positive_int,
        default=10,
        help="rooms the bots are dealt over (default 10)",
    )
    users.add_argument(
        "--room-start",
        type=int,
        default=0,
        help="number of the first room (the server's --room-start; default 0)",
    )
    users.add_argument(
        "--server-rooms",
        type=_positive_int,
        default=10,
        metavar="N",
        help="how many rooms the server has (its --rooms; default 10, chatsvc's"
        " default): checked before the run",
    )
    users.add_argument(
        "--room-capacity",
        type=_positive_int,
        default=4,
        metavar="N",
        help="users a room of the server holds (its --room-capacity; default 4,"
        " chatsvc's default): checked before the run",
    )


def _add_login(parser: argparse.ArgumentParser, users: argparse._ArgumentGroup) -> None:
    users.add_argument(
        "--user-prefix",
        default="bench",
        help="user ids are this prefix and the bot's index (default 'bench')",
    )
    users.add_argument(
        "--user-start",
        type=int,
        default=0,
        help="index of the first bot, to run several testers side by side",
    )
    login = parser.add_argument_group("login")
    login.add_argument(
        "--password",
        default="pw",
        help="every bot's password (open login ignores it; default 'pw')",
    )
    login.add_argument(
        "--redis",
        metavar="URL",
        help="before the run, SET every bot's password key in this Redis"
        " (redis://[user:password@]host:port/db), for a server run with --redis",
    )
    login.add_argument(
        "--redis-key-prefix",
        default="",
        help="prefix of the password keys (the server's --redis-key-prefix)",
    )


def _add_load(parser: argparse.ArgumentParser, scenario: str) -> None:
    what = "echoes" if scenario == "echo" else "messages"
    load = parser.add_argument_group("load")
    load.add_argument(
        "--rate",
        type=_non_negative,
        default=1.0,
        metavar="PER_S",
        help=f"{what} a second per user; 0: closed loop, as fast as the server"
        " answers, --window at a time (default 1)",
    )
    load.add_argument(
        "--window",
        "--depth",
        type=_positive_int,
        help=f"with --rate 0 only: {what} in flight per user, the next sent as"
        " one comes back"
        + (" (1 is ping-pong)" if scenario == "echo" else "")
        + " (default 1)",
    )
    if scenario == "echo":
        load.add_argument(
            "--size",
            type=int,
            default=32,
            help=f"echo packet size in bytes, header included ({MIN_ECHO_SIZE}.."
            f"{MAX_SERVER_PACKET}; default 32)",
        )
    if scenario == "churn":
        load.add_argument(
            "--cycle-messages",
            type=int,
            default=5,
            help="messages per cycle (default 5)",
        )
        load.add_argument(
            "--churn-pause",
            type=_non_negative,
            default=0.05,
            help="seconds a bot waits after a failed cycle (default 0.05)",
        )


def _add_timing(parser: argparse.ArgumentParser, scenario: str) -> None:
    timing = parser.add_argument_group("timing")
    timing.add_argument(
        "--duration",
        type=_non_negative,
        default=DEFAULT_DURATION[scenario],
        metavar="S",
        help=(
            "seconds the logged-in connections are held after the storm"
            if scenario == "login"
            else "seconds of the measured phase"
        )
        + f" (default {DEFAULT_DURATION[scenario]:g})",
    )
    timing.add_argument(
        "--ramp-up",
        type=_non_negative,
        default=0.0,
        metavar="S",
        help="spread the bots' start (connecting"
        + ("; churn: first cycle" if scenario == "churn" else "")
        + ") over S seconds (default 0: as fast as --connect-concurrency allows)",
    )
    if scenario != "login":
        timing.add_argument(
            "--warmup",
            type=_non_negative,
            default=0.0,
            metavar="S",
            help="seconds of load before measuring starts (default 0)",
        )
    timing.add_argument(
        "--drain",
        type=_non_negative,
        default=5.0,
        metavar="S",
        help="after the measured phase, seconds to wait for the last answers and"
        " notifies (default 5)",
    )
    timing.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for a connection or an answer (default 10)",
    )


def _add_runner(parser: argparse.ArgumentParser, scenario: str) -> None:
    runner = parser.add_argument_group("load generator")
    runner.add_argument(
        "--procs",
        type=_positive_int,
        default=1,
        help="load processes the bots are spread over"
        + (" (whole rooms per process where possible)" if scenario in _IN_ROOMS else "")
        + "; their results are merged (default 1)",
    )
    runner.add_argument(
        "--connect-concurrency",
        type=_positive_int,
        default=100,
        help="connection attempts in progress at once, over all processes"
        " (default 100; a server's listen backlog is often small)",
    )
    runner.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop of the load processes (auto: uvloop when installed)",
    )
    if scenario in _IN_ROOMS:
        runner.add_argument(
            "--no-numpy",
            dest="fast_path",
            action="store_false",
            help="check notifies one by one in Python even when numpy is"
            " installed (numpy checks runs of notifies at once: a faster load"
            " generator, the same results)",
        )
    runner.add_argument(
        "--server-pid",
        type=_positive_int,
        metavar="PID",
        help="also measure the CPU time of this server process (and of the whole"
        " machine) over the measured window (Linux)",
    )


def build_parser() -> argparse.ArgumentParser:
    """
    Return the command-line parser: one sub-command per scenario, each with
    its own options (every one explained in C{--help}).
    """
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scenarios = parser.add_subparsers(
        dest="scenario", metavar="SCENARIO", title="scenarios", required=True
    )
    for scenario in SCENARIOS:
        sub = scenarios.add_parser(
            scenario,
            help=SCENARIO_HELP[scenario],
            description=textwrap.fill(SCENARIO_HELP[scenario], 79),
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_common(sub, scenario)
    return parser


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, RunConfig]:
    """
    Parse and check the command line; exit with usage help on a mistake.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    defaults = RunConfig(args.scenario)

    def get(name: str) -> Any:
        return getattr(args, name, getattr(defaults, name))

    def error(text: str) -> NoReturn:
        parser.exit(EXIT_USAGE, f"{PROGRAM} {args.scenario}: error: {text}\n")

    if args.scenario == "echo" and not MIN_ECHO_SIZE <= args.size <= MAX_SERVER_PACKET:
        error(f"--size must be {MIN_ECHO_SIZE}..{MAX_SERVER_PACKET}")
    window = getattr(args, "window", None)
    # --window 1 is what every paced bot has anyway: only more is refused.
    if window is not None and window > 1 and get("rate") != 0:
        error(
            "--window sets how many messages (or echoes) each bot keeps in flight"
            " in a closed loop, which only --rate 0 runs; with --rate R each bot"
            " sends R a second whatever comes back: add --rate 0, or leave"
            " --window out"
        )
    user_start = get("user_start")
    last_index = user_start + args.users - 1
    if user_start < 0 or last_index > MAX_SENDER:
        error(f"bot indices must stay within 0..{MAX_SENDER}")
    if len(f"{get('user_prefix')}{last_index}".encode()) > MAX_USER_ID_LEN:
        error(f"user ids must fit {MAX_USER_ID_LEN} bytes: shorten --user-prefix")
    if len(get("password").encode()) > MAX_USER_PW_LEN:
        error(f"--password must fit {MAX_USER_PW_LEN} bytes")
    if get("cycle_messages") < 0:
        error("--cycle-messages must be 0 or more")
    if args.timeout <= 0:
        error("--timeout must be positive")
    if args.procs > args.users:
        error("--procs cannot exceed --users")
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        error("--plot needs matplotlib: pip install 'chatsvc[bench]'")
    if get("redis"):
        from chatsvc.host.redis_login import RedisURL

        try:
            RedisURL.parse(get("redis"))
        except ValueError as e:
            error(f"--redis: {e}")
    # Options a scenario does not have keep RunConfig's defaults.
    values = {f.name: get(f.name) for f in fields(RunConfig) if f.name != "window"}
    return args, RunConfig(**values, window=window or 1)


def _say(text: str) -> None:
    print(f"{PROGRAM}: {text}", file=sys.stderr, flush=True)


def _prepare_redis(config: RunConfig) -> int:
    from chatsvc.host.redis_login import RedisURL
    from chatsvc.loadtest.directory import Directory
    from chatsvc.loadtest.redis_keys import set_passwords

    assert config.redis is not None
    directory = Directory(config.user_prefix)
    lifetime = config.ramp_up + config.warmup + config.duration + config.drain
    return set_passwords(
        RedisURL.parse(config.redis),
        (directory.user_id(index) for index in config.bot_indices()),
        config.password.encode("utf-8"),
        key_prefix=config.redis_key_prefix.encode("utf-8"),
        expire_seconds=int(max(600, 2 * lifetime + 2 * config.timeout)),
        timeout=config.timeout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run C{chatsvc-bench}; return the exit code.
    """
    args, config = parse_args(sys.argv[1:] if argv is None else argv)
    from chatsvc.loadtest.fdlimit import check_fd_limit, raise_fd_limit
    from chatsvc.loadtest.preflight import UnreachableError, preflight, room_hints
    from chatsvc.loadtest.redis_keys import RedisError
    from chatsvc.loadtest.runner import run

    limit = raise_fd_limit()
    problem = check_fd_limit(config, limit)
    if problem is not None:
        _say(problem)
        return EXIT_USAGE
    if not args.quiet:
        _say(f"open-file limit {limit.describe()}")
    for hint in room_hints(config):
        _say(f"hint: {hint}")
    try:
        for host, port in {config.address(i) for i in range(config.users)}:
            preflight(host, port, config.timeout)
    except UnreachableError as e:
        _say(str(e))
        return EXIT_USAGE
    if config.redis:
        try:
            count = _prepare_redis(config)
        except RedisError as e:
            _say(f"could not create the users' keys: {e}")
            return EXIT_USAGE
        if not args.quiet:
            _say(f"set {count} password keys in Redis")

    def show(row: dict[str, Any], phase: str) -> None:
        print(progress_line(row, phase), file=sys.stderr, flush=True)

    environment = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "fd_limit": limit.describe(),
        "fd_soft_limit": limit.soft,
        "procs": config.procs,
    }
    try:
        summary = run(
            config, environment=environment, progress=None if args.quiet else show
        )
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
    print(summary_table(summary))
    if args.json is not None:
        args.json.write_text(json.dumps(summary.to_json(), indent=1) + "\n")
    if args.plot is not None:
        plot(summary, args.plot)
    if summary.fatal:
        _say(summary.fatal)
    return EXIT_FAILED if summary.failed_checks else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
