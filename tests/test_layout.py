"""The rules of the package layout (docs/architecture.md), checked on the source.

- Imports flow one way, down the ranks below: a package imports only packages of a
  lower rank at run time. Two packages of one rank never import each other (so
  `mqtt` and `nats` stay apart), and nothing imports upward, so there is no cycle.
  An import under ``if TYPE_CHECKING:`` never runs; only the pairs listed in
  TYPE_ONLY_UPWARD may use one to name a type from above.
- No module over MAX_MODULE_LINES lines; no function over MAX_FUNCTION_LINES
  unless it is a hand-tuned hot path that says so (a ``# hot path:`` comment among
  its first lines, with the reason).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "hybridbus"

MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 80

# Lower ranks are imported by higher ones, never the other way.
RANKS = {
    "hybridbus": 0,  # the package root: the version only
    "hybridbus.log": 0,
    "hybridbus.options": 0,
    "hybridbus.subjects": 0,
    "hybridbus.codec": 0,
    "hybridbus.router": 1,
    "hybridbus.store": 1,
    "hybridbus.config": 1,
    "hybridbus.security": 1,
    "hybridbus.core": 2,
    "hybridbus.mqtt": 3,
    "hybridbus.nats": 3,
    "hybridbus.jetstream": 3,
    "hybridbus.leaf": 3,
    "hybridbus.monitor": 3,
    "hybridbus.server": 4,
    "hybridbus.cli": 5,
    "hybridbus.__main__": 6,
}

# Type-only imports that name a class from a higher rank (they never execute).
TYPE_ONLY_UPWARD = {("hybridbus.monitor", "hybridbus.server")}


def _unit(module: str) -> str:
    """The layout unit a module belongs to: the longest RANKS key that prefixes it."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in RANKS:
            return name
    raise AssertionError(f"{module} is in no layout unit: add it to RANKS and the doc")


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: pathlib.Path):
    """Yield (imported module, type_only, line) for every hybridbus import in a file."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))

    def visit(node: ast.AST, type_only: bool):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from visit(child, True)
            for child in node.orelse:
                yield from visit(child, type_only)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "hybridbus" or target.startswith("hybridbus."):
                yield target, type_only, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hybridbus"):
                    yield alias.name, type_only, node.lineno
        for child in ast.iter_child_nodes(node):
            yield from visit(child, type_only)

    yield from visit(tree, False)


SOURCES = sorted(ROOT.rglob("*.py"))


def test_every_module_belongs_to_a_ranked_unit():
    for path in SOURCES:
        _unit(_module_name(path))


def test_imports_flow_down_the_ranks():
    wrong = []
    for path in SOURCES:
        here = _unit(_module_name(path))
        for target, type_only, line in _imports(path):
            there = _unit(target)
            if there == here or RANKS[there] < RANKS[here]:
                continue
            if type_only and (here, there) in TYPE_ONLY_UPWARD:
                continue
            kind = "type-only " if type_only else ""
            wrong.append(f"{path.relative_to(ROOT.parent)}:{line}: {here} {kind}imports {there}")
    assert not wrong, "imports against the layout:\n" + "\n".join(wrong)


def test_no_cycle_between_units():
    # Implied by the ranks, but checked on its own so a change to RANKS cannot hide one.
    graph: dict[str, set[str]] = {}
    for path in SOURCES:
        here = _unit(_module_name(path))
        for target, type_only, _ in _imports(path):
            there = _unit(target)
            if there != here and not type_only:
                graph.setdefault(here, set()).add(there)

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(unit for unit in graph if unit in reach(unit))
    assert not cycles, f"units on an import cycle: {cycles}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_module_size(path: pathlib.Path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{lines} lines: split it along its ideas"


def test_function_size():
    long = []
    for path in SOURCES:
        text = path.read_text()
        source_lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = node.end_lineno - node.lineno + 1
            if length <= MAX_FUNCTION_LINES:
                continue
            # the comment may sit just above the def or among its first lines
            head = source_lines[max(0, node.lineno - 3) : node.lineno + 12]
            if any("# hot path:" in line for line in head):
                continue
            long.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name} ({length})")
    assert not long, "functions over the limit (split, or mark a hot path and say why):\n" + (
        "\n".join(long)
    )
