"""
The learner's guide (C{docs/guide/}) kept true: every chatsvc and Twisted name
it mentions exists, every test id it names is collected, every command it
shows parses with the program's own option parser, every relative link
points at a file, the Korean and English trees have the same pages with the
same code blocks, and the layer diagram matches its source.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from twisted.application import reactors
from twisted.python import usage
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.interface import InterfaceClass

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guide"
LANGUAGES = ("en", "ko")
DIAGRAM_SOURCE = GUIDE / "layers.dot"
DIAGRAM = GUIDE / "layers.svg"
DIAGRAM_COMMAND = [
    "dot",
    "-Tsvg",
    "docs/guide/layers.dot",
    "-o",
    "docs/guide/layers.svg",
]

FENCE = re.compile(r"^```(\S*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOTTED = re.compile(r"(?:chatsvc|twisted)(?:\.\w+)+")
PYTEST_ID = re.compile(r"tests/[\w/]+\.py(?:::\w+)+")
TRIAL_ID = re.compile(r"tests(?:\.\w+)+")
IOCPREACTOR = "twisted.internet.iocpreactor."


def pages(language: str) -> list[Path]:
    return sorted((GUIDE / language).glob("*.md"))


def all_pages() -> Iterator[Path]:
    for language in LANGUAGES:
        yield from pages(language)


def code_blocks(page: Path) -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in FENCE.finditer(page.read_text("utf-8"))]


def prose(page: Path) -> str:
    """
    The page without its fenced code blocks.
    """
    return FENCE.sub("", page.read_text("utf-8"))


def resolve(dotted: str) -> object:
    """
    Import the longest importable prefix of C{dotted} and look the rest up
    as attributes; raise C{LookupError} naming what is missing.
    """
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if isinstance(found, InterfaceClass) and name in found.names(all=True):
                found = found[name]
            elif hasattr(found, name):
                found = getattr(found, name)
            else:
                raise LookupError(f"{dotted}: {name!r} not found")
        return found
    raise LookupError(f"{dotted}: not importable")


def defines(node: ast.stmt, name: str) -> bool:
    """
    Whether the statement C{node} gives C{name} a value.
    """
    if isinstance(node, ast.ClassDef | ast.FunctionDef):
        return node.name == name
    if isinstance(node, ast.Assign):
        targets = [n for t in node.targets for n in ast.walk(t)]
        return any(isinstance(n, ast.Name) and n.id == name for n in targets)
    if isinstance(node, ast.ImportFrom):
        return any((a.asname or a.name) == name for a in node.names)
    return False


def resolve_iocpreactor(dotted: str) -> None:
    """
    Find a name of Twisted's IOCP reactor in its source: the reactor's
    extension exists only on Windows, so the modules cannot be imported here.
    """
    rest = dotted[len(IOCPREACTOR) :].split(".")
    source = Path(reactors.__file__).parent.parent / "internet" / "iocpreactor"
    module = source / f"{rest[0]}.py"
    if not module.exists():
        raise LookupError(f"{dotted}: no module {module.name}")
    scope: list[ast.stmt] = ast.parse(module.read_text("utf-8")).body
    for name in rest[1:]:
        node = next((n for n in scope if defines(n, name)), None)
        if node is None:
            raise LookupError(f"{dotted}: {name!r} not found in {module.name}")
        scope = node.body if isinstance(node, ast.ClassDef) else []


def check_name(dotted: str) -> None:
    if dotted.startswith(IOCPREACTOR):
        resolve_iocpreactor(dotted)
    else:
        resolve(dotted)


@cache
def collected(files: tuple[str, ...]) -> frozenset[str]:
    """
    The test ids pytest collects from C{files}.
    """
    collect = ["--collect-only", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *collect, *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    ids = frozenset(line for line in result.stdout.splitlines() if "::" in line)
    if not ids:
        raise AssertionError(f"pytest collected nothing:\n{result.stdout}")
    return ids


def check_test_ids(ids: set[str]) -> list[str]:
    files = tuple(sorted({i.split("::")[0] for i in ids}))
    missing = [f for f in files if not (ROOT / f).exists()]
    if missing:
        return [f"no test file {f}" for f in missing]
    known = collected(files)
    return [
        f"test id not collected: {i}"
        for i in sorted(ids)
        if i not in known and not any(k.startswith(i + "::") for k in known)
    ]


class GuideServerOptions(ServerOptions):  # type: ignore[misc]
    """
    twistd's own options, except that C{--reactor} only checks the name:
    installing the reactor is not what a parse should do.
    """

    def opt_reactor(self, name: str) -> None:
        names = {r.shortName for r in reactors.getReactorTypes()}
        if name not in names:
            raise usage.UsageError(f"unknown reactor {name!r}")

    opt_r = opt_reactor


WINDOWS_ONLY = "--log-eventlog"


def parse_twistd(argv: list[str]) -> None:
    """
    Parse a twistd command line. C{--log-eventlog} is refused off Windows, so
    there it is only looked up in the plugin's flags and left out of the parse.
    """
    options = GuideServerOptions()
    if sys.platform != "win32" and WINDOWS_ONLY in argv:
        argv = [a for a in argv if a != WINDOWS_ONLY]
        options.parseOptions(argv)
        if options.subOptions is None or WINDOWS_ONLY[2:] not in options.subOptions:
            raise usage.UsageError(f"option {WINDOWS_ONLY} not recognized")
    else:
        options.parseOptions(argv)
    if options["python"]:
        if not (ROOT / options["python"]).exists():
            raise usage.UsageError(f"no file {options['python']}")
    elif options.subCommand is None:
        raise usage.UsageError("no plugin named")


def parse_argparse(parse: Any, argv: list[str]) -> None:
    try:
        parse(argv)
    except SystemExit as e:
        raise usage.UsageError(f"exit status {e.code}") from None


def bench_script(path: str) -> ModuleType:
    """
    Load one of C{bench/}'s scripts as a module (they import their
    neighbours as top-level modules).
    """
    bench = str(ROOT / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    name = f"guide_bench_{Path(path).stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def check_command(argv: list[str], test_ids: set[str]) -> None:
    """
    Parse one command as its program would, run from the repository's root
    as the guide says, or raise.
    """
    with contextlib.chdir(ROOT):
        parse_command(argv, test_ids)


def parse_command(argv: list[str], test_ids: set[str]) -> None:
    program, args = argv[0], argv[1:]
    if program == "twistd":
        parse_twistd(args)
    elif program == "chatsvc-client":
        from chatsvc.client.cli import parse_arguments

        parse_argparse(parse_arguments, args)
    elif program == "chatsvc-bench":
        from chatsvc.loadtest.cli import parse_args

        parse_argparse(parse_args, args)
    elif program == "python" and args[:2] == ["-m", "pytest"]:
        for arg in args[2:]:
            if arg.startswith("-"):
                continue
            if "::" in arg:
                test_ids.add(arg)
            elif not (ROOT / arg).exists():
                raise usage.UsageError(f"no file {arg}")
    elif program == "python" and args[:2] == ["-m", "twisted.trial"]:
        for arg in args[2:]:
            if not arg.startswith("-"):
                resolve(arg)
    elif program == ".ci/iocp.sh":
        for arg in args:
            if not arg.startswith("tests.integration"):
                raise usage.UsageError(f"{arg}: not an integration test")
            resolve(arg)
    elif program == "python" and args[:1] and args[0].startswith("bench/"):
        parse_argparse(bench_script(args[0]).parse_args, args[1:])
    elif program == "dot":
        if argv != DIAGRAM_COMMAND:
            raise usage.UsageError("not the diagram's command")
    else:
        raise usage.UsageError(f"unknown program {program!r}")


def commands(script: str) -> Iterator[list[str]]:
    """
    The commands of a C{sh} block: one or more per line, joined by C{&&},
    with C{# comments}.
    """
    for line in script.splitlines():
        argv: list[str] = []
        for word in [*shlex.split(line, comments=True), "&&"]:
            if word != "&&":
                argv.append(word)
            elif argv:
                yield argv
                argv = []


class GuideTests(SynchronousTestCase):
    """
    The guide's pages against the code, the tests and each other.
    """

    maxDiff = None

    def test_both_languages_have_the_same_pages(self) -> None:
        names = {lang: [p.name for p in pages(lang)] for lang in LANGUAGES}
        self.assertIn("index.md", names["en"])
        self.assertGreaterEqual(len(names["en"]), 15)
        self.assertEqual(names["en"], names["ko"])

    def test_both_languages_have_the_same_code_blocks(self) -> None:
        for page in pages("en"):
            self.assertEqual(
                code_blocks(page), code_blocks(GUIDE / "ko" / page.name), page.name
            )

    def test_code_blocks_are_commands_or_text(self) -> None:
        for page in all_pages():
            for info, _ in code_blocks(page):
                self.assertIn(info, ("sh", "text"), page)

    def test_named_code_exists(self) -> None:
        problems = []
        for page in all_pages():
            for span in CODE_SPAN.findall(prose(page)):
                if DOTTED.fullmatch(span):
                    try:
                        check_name(span)
                    except LookupError as e:
                        problems.append(f"{page.relative_to(GUIDE)}: {e}")
        self.assertEqual(problems, [])

    def test_links_point_at_files(self) -> None:
        problems = []
        for page in all_pages():
            text = prose(page)
            for target in LINK.findall(text):
                if target.startswith(("http://", "https://", "#")):
                    continue
                path = (page.parent / target.split("#")[0]).resolve()
                if not path.exists():
                    problems.append(f"{page.relative_to(GUIDE)}: {target}")
            for dotted, target in re.findall(
                r"\[`(chatsvc(?:\.\w+)+)`\]\(([^)\s#]+)", text
            ):
                path = (page.parent / target).resolve()
                module = resolve(dotted)
                while not isinstance(module, ModuleType):
                    module = sys.modules[module.__module__]  # type: ignore[attr-defined]
                if Path(str(module.__file__)).resolve() != path:
                    problems.append(
                        f"{page.relative_to(GUIDE)}: {dotted} is not in {target}"
                    )
        self.assertEqual(problems, [])

    def test_commands_parse(self) -> None:
        test_ids: set[str] = set()
        problems = []
        for page in pages("en"):
            for info, script in code_blocks(page):
                if info != "sh":
                    continue
                for argv in commands(script):
                    try:
                        check_command(argv, test_ids)
                    except (usage.UsageError, LookupError) as e:
                        problems.append(f"{page.name}: {shlex.join(argv)}: {e}")
        self.assertEqual(problems, [])
        self.assertGreaterEqual(len(test_ids), 13)

    def test_test_ids_are_collected(self) -> None:
        ids: set[str] = set()
        for page in all_pages():
            ids.update(PYTEST_ID.findall(page.read_text("utf-8")))
        self.assertEqual(check_test_ids(ids), [])
        for page in all_pages():
            for dotted in TRIAL_ID.findall(page.read_text("utf-8")):
                if not dotted.endswith(".py"):
                    resolve(dotted)

    def test_every_step_names_a_test_and_a_command(self) -> None:
        for page in pages("en"):
            if page.name[:2].isdigit() or page.name == "logger.md":
                text = page.read_text("utf-8")
                self.assertRegex(text, r"python -m pytest tests/\S+::", page.name)
                self.assertRegex(
                    text, r"(?m)^(twistd|chatsvc-client|chatsvc-bench) ", page.name
                )

    def test_measured_numbers_are_the_benchmarks(self) -> None:
        """
        Every count on the optimisation page (a number with thousands
        separators) is one that C{bench/README.md} reports.
        """
        results = (ROOT / "bench" / "README.md").read_text("utf-8")
        for language in LANGUAGES:
            page = (GUIDE / language / "11-optimisation.md").read_text("utf-8")
            numbers = set(re.findall(r"\d{1,3}(?:,\d{3})+", page))
            self.assertGreaterEqual(len(numbers), 8)
            self.assertEqual(sorted(n for n in numbers if n not in results), [])

    def test_diagram_matches_its_source(self) -> None:
        svg = DIAGRAM.read_text("utf-8")
        source = DIAGRAM_SOURCE.read_text("utf-8")
        nodes = re.findall(r"^\s*(\w+)\s*\[", source, re.MULTILINE)
        nodes = [n for n in nodes if n not in ("graph", "node", "edge")]
        self.assertGreaterEqual(len(nodes), 10)
        for node in nodes:
            self.assertIn(f"<title>{node}</title>", svg)
        if shutil.which("dot") is not None:
            fresh = subprocess.run(
                DIAGRAM_COMMAND[:3],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            self.assertEqual(
                strip_comments(fresh),
                strip_comments(svg),
                f"regenerate the picture: {shlex.join(DIAGRAM_COMMAND)}",
            )


def strip_comments(svg: str) -> str:
    return re.sub(r"<!--.*?-->", "", svg, flags=re.DOTALL)
