"""
Where a running Python server's time goes: py-spy samples of its stacks
while a load runs, and a summary of them (self and inclusive share per
function). ``bench/chat.py --profile DIR`` uses it; on its own it summarizes
stacks recorded earlier:

    python bench/profiling.py STACKS.txt [--top N]

The stacks are py-spy's ``--format raw`` (collapsed stacks, one per line with
its count), which flame-graph tools such as inferno or speedscope also read.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import _common

RATE = 200
"""Samples a second: enough for shares to ±2 points over 10 s, and little
enough that the server does not notice (py-spy runs on the other core)."""


def py_spy() -> str | None:
    """
    Return the py-spy executable of this environment or the path, if any.
    """
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def sampling(pid: int, stacks: Path, seconds: float, nice: int) -> Iterator[None]:
    """
    Sample process C{pid} with py-spy for C{seconds} while the block runs, and
    write its collapsed stacks to C{stacks} before returning.
    """
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy not found: pip install py-spy")
    argv = [
        binary, "record", "--pid", str(pid), "--format", "raw",
        "--output", str(stacks), "--duration", f"{max(1, round(seconds))}",
        "--rate", str(RATE), "--nonblocking",
    ]  # fmt: skip
    # Any core: pinned to the load's, py-spy would get too few samples; the
    # server's core stays the server's as far as the scheduler can.
    every_core = frozenset(range(os.cpu_count() or 1))
    spy = _common.spawn(argv, every_core, nice, subprocess.DEVNULL, subprocess.STDOUT)
    try:
        yield
        try:
            spy.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
    finally:
        _common.stop(spy)


def summarize(stacks: Path, top: int = 15) -> list[str]:
    """
    Self and inclusive share of samples per function in py-spy's collapsed
    C{stacks}.
    """
    if not stacks.exists():
        return ["py-spy produced nothing (ptrace not permitted?)"]
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in stacks.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [frame_name(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return ["no samples"]
    lines = [f"{total} samples; self time (where the CPU was):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("inclusive time (this function and what it called):")
    lines += [
        f"  {100 * n / total:5.1f}%  {name}"
        for name, n in inclusive.most_common(top + 10)
        if 100 * n / total < 99.5
    ][:top]
    return lines


def frame_name(frame: str) -> str:
    """
    Shorten py-spy's C{"function (path/file.py:line)"} to the function and
    its path inside its package.
    """
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    marker = "site-packages/"
    if marker in path:
        path = path.split(marker, 1)[1]
    elif "/chatsvc/" in path:
        path = "chatsvc/" + path.split("/chatsvc/", 1)[1]
    return f"{name} ({path})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Summarize py-spy's collapsed stacks (--format raw)."
    )
    parser.add_argument("stacks", type=Path)
    parser.add_argument("--top", type=int, default=15, help="functions (15)")
    args = parser.parse_args(argv)
    print("\n".join(summarize(args.stacks, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
