"""
chatload, the chat protocol's load generator in C (``../shared/tools/chatload.c``,
not part of chatsvc): building it from its source, its command line for a
fan-out load, and what ``bench/chat.py`` reads from its JSON.

It checks every notify as ``chatsvc-bench`` does (loss, duplicates, order,
latency) for about a tenth of the CPU, so one core of it saturates a Python
server on another core.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

CFLAGS = ("-O2", "-Wall", "-pthread")
_NAN = re.compile(r"-?\bnan\b")
FAILURES = (
    "lost", "duplicates", "reordered", "corrupt", "foreign", "unexpected",
    "order_errors", "connect_failures", "login_failures", "enter_failures",
    "setup_timeouts", "disconnects", "protocol_errors", "unknown_packets",
    "unexpected_responses",
)  # fmt: skip
"""Counters of chatload's JSON that must be zero in a clean run."""


def cache_directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "chatsvc-bench"


def build(source: Path, cache: Path | None = None) -> Path:
    """
    Compile C{source} with the C compiler (C{$CC}, else C{cc}) into C{cache}
    (default C{~/.cache/chatsvc-bench}), named by a hash of the source and
    flags so that a changed source is built again; return the binary.
    """
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError(f"no C compiler (cc, gcc or $CC) to build {source}")
    text = source.read_bytes()
    digest = hashlib.sha256(text + " ".join(CFLAGS).encode()).hexdigest()[:16]
    directory = cache or cache_directory()
    binary = directory / f"{source.stem}-{digest}"
    if binary.exists():
        return binary
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        built = Path(scratch) / source.stem
        compiled = subprocess.run(
            [compiler, *CFLAGS, "-o", str(built), str(source)],
            capture_output=True,
            text=True,
            check=False,
        )
        if compiled.returncode:
            raise RuntimeError(f"building {source} failed:\n{compiled.stderr}")
        built.replace(binary)
    return binary


def executable(path: Path) -> Path:
    """
    Return the chatload binary for C{path}: C{path} itself, or built from it
    when it is C source (C{.c}).
    """
    if path.suffix == ".c":
        return build(path)
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is not an executable (nor a .c source)")
    return path


def command(
    binary: Path,
    port: int,
    *,
    users: int,
    room_size: int,
    rate: float,
    window: int,
    seconds: float,
    warmup: float,
    server_pid: int,
) -> list[str]:
    """
    The command line of one fan-out run: C{rate} chats a second over all
    users (open loop), or, when 0, C{window} chats in flight per user.
    """
    load = ["--rate", f"{rate:g}"] if rate else ["--window", str(window)]
    return [
        str(binary), "--port", str(port), "--users", str(users),
        "--room-size", str(room_size), *load, "--duration", f"{seconds:g}",
        "--warmup", f"{warmup:g}", "--server-pid", str(server_pid), "--json",
    ]  # fmt: skip


def parse(output: str) -> dict[str, Any]:
    """
    Read chatload's JSON line (it prints C{nan} where nothing was measured).
    """
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if not lines:
        raise ValueError("chatload printed no JSON")
    return dict(json.loads(_NAN.sub("NaN", lines[-1])))


def _number(value: Any) -> float:
    number = float(value or 0.0)
    return 0.0 if math.isnan(number) or number < 0 else number


def values(data: dict[str, Any]) -> dict[str, float]:
    """
    The fan-out figures of C{bench/chat.py} from chatload's JSON; CPU in %
    of one core, over the measured window.
    """
    latency = data.get("latency_ms", {})
    server = 100 * _number(data.get("server_cpu"))
    load = 100 * _number(data.get("client_cpu"))
    busy = sum(_number(core) for core in data.get("core_busy_pct", []))
    return {
        "notifies_per_s": _number(data.get("notifies_per_s")),
        "sent_per_s": _number(data.get("chats_sent_per_s")),
        "p50_ms": _number(latency.get("p50")),
        "p99_ms": _number(latency.get("p99")),
        "server_cpu_pct": server,
        "load_cpu_pct": load,
        "other_cpu_pct": max(0.0, busy - server - load),
    }


def failures(data: dict[str, Any]) -> list[str]:
    """
    What went wrong in a run, one note per non-zero counter.
    """
    notes = [f"{name} {data[name]}" for name in FAILURES if data.get(name)]
    if not data.get("ok", False) and not notes:
        notes.append(f"chatload exit status {data.get('exit_code')}")
    return notes
