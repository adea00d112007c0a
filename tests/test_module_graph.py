"""
The tools' modules import each other without cycles: each one can be read,
tested and replaced on its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("chatsvc.loadtest", "chatsvc.client", "chatsvc.protocol")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """
    Return, for every module of L{PACKAGES}, the modules of those packages it
    imports (anywhere in the module, C{TYPE_CHECKING} blocks included).
    """
    modules = {
        _module_name(path): path
        for package in PACKAGES
        for path in (ROOT / package.replace(".", "/")).glob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module]
                targets += [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """
    Return one import cycle of C{graph} (a package importing its own modules
    is not one), or L{None}.
    """
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for target in sorted(graph[node]):
            if target.startswith(node + "."):
                continue
            cycle = visit(target, [*path, node])
            if cycle is not None:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle is not None:
            return cycle
    return None


class ImportGraphTests(SynchronousTestCase):
    def test_finds_a_cycle(self) -> None:
        graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
        self.assertEqual(find_cycle(graph), ["a", "b", "c", "a"])
        self.assertIsNone(find_cycle({"a": {"b"}, "b": set()}))

    def test_tools_have_no_import_cycles(self) -> None:
        graph = import_graph()
        self.assertIn("chatsvc.loadtest.bot", graph)
        self.assertIn("chatsvc.loadtest.fastpath", graph["chatsvc.loadtest.bot"])
        self.assertIsNone(find_cycle(graph))
