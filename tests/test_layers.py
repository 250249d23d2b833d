"""The import graph of kale_ext, read from its source: floors that only point down.

Every ``.py`` file under ``kale_ext/`` is parsed (AST); every import counts, those inside
functions too, except the ones under ``if TYPE_CHECKING:`` (type hints only). Relative
imports are resolved. A *unit* is what sits directly under ``kale_ext``: a package
(``search``, ``clusters``, ...) or a top-level module (``cli``, ``config``, ``_errors``,
...); ``kale_ext/__init__.py`` itself is the unit ``__init__``.

- no cycle between units;
- no unit imports another unit's private ``_`` module or private ``_`` name;
- every import goes to the same floor or a lower one (``FLOORS`` below);
- no file is longer than ``MAX_LINES`` lines.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOT = REPO / "kale_ext"
MAX_LINES = 400

# The floors, lowest first. A unit may import units of its own floor or of floors below.
FLOORS: tuple[tuple[str, ...], ...] = (
    # errors, configuration, the registry; kernelspecs needs nothing above errors
    ("_errors", "config", "registry", "kernelspecs", "views"),
    ("channel", "store"),                    # the metric channel, SQLite stores
    ("trial",),                              # trial states, decisions, the trial runtime
    ("export",),                             # a store to TensorBoard, MLflow, Optuna, tables
    ("clusters",),                           # the Cluster API, backends, batch systems
    ("search", "training"),                  # searches, distributed runs
    ("models",),                             # ready trainables built on search and trial
    ("widgets",),                            # the panel and cluster displays
    ("server", "cli", "cli_cluster", "cli_jupyter", "magics", "demo", "__init__"),  # faces
)
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}


@dataclass(frozen=True)
class Import:
    """One import statement's target, seen from the file and line that imports it."""

    path: str      # kale_ext/search/_driver.py
    line: int
    source: str    # the importing unit
    target: str    # the imported module, e.g. kale_ext.search._trial
    name: str      # the imported name when it is not a module ("_option"), else ""

    @property
    def unit(self) -> str:
        return unit_of(self.target)

    def where(self) -> str:
        shown = f"{self.target}.{self.name}" if self.name else self.target
        return f"{self.path}:{self.line}: {self.source} imports {shown}"


def unit_of(module: str) -> str:
    """``kale_ext.search._driver`` -> ``search``; ``kale_ext`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _modules() -> frozenset[str]:
    return frozenset(_module_name(p) for p in ROOT.rglob("*.py"))


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Ids of the nodes inside ``if TYPE_CHECKING:`` bodies (not their ``else``)."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
                "TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for statement in node.body:
                hidden.update(id(n) for n in ast.walk(statement))
    return hidden


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[:len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports_of(path: Path) -> list[Import]:
    module = _module_name(path)
    source = unit_of(module)
    rel = str(path.relative_to(REPO))
    tree = ast.parse(path.read_text(), filename=rel)
    hidden = _type_checking_only(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            found += [Import(rel, node.lineno, source, alias.name, "") for alias in node.names
                      if alias.name.split(".")[0] == "kale_ext"]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path, node)
            if base.split(".")[0] != "kale_ext":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in _modules():  # from kale_ext.clusters import _batch: a module
                    found.append(Import(rel, node.lineno, source, sub, ""))
                else:                  # from kale_ext.cli import table: a name
                    found.append(Import(rel, node.lineno, source, base,
                                        "" if alias.name == "*" else alias.name))
    return found


@functools.cache
def imports() -> tuple[Import, ...]:
    """Every import of a kale_ext module by a file of kale_ext, in file order."""
    found = [i for path in sorted(ROOT.rglob("*.py")) for i in _imports_of(path)]
    return tuple(sorted(found, key=lambda i: (i.path, i.line)))


def _crossing() -> list[Import]:
    return [i for i in imports() if i.unit != i.source]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read() -> None:
    """Guard the reader itself: it sees the package, function-local imports included."""
    units = {i.source for i in imports()}
    assert {"__init__", "cli", "clusters", "search", "server"} <= units
    assert any(i.source == "cli_cluster" and i.unit == "clusters" for i in imports())


def test_no_cycle_between_units() -> None:
    edges: dict[str, set[str]] = {}
    for i in _crossing():
        edges.setdefault(i.source, set()).add(i.unit)
    messages = []
    for cycle in _cycles(edges):
        members = set(cycle)
        lines = [i.where() for i in _crossing() if i.source in members and i.unit in members]
        messages.append(f"cycle {' <-> '.join(cycle)}, through:\n  " + "\n  ".join(lines))
    assert not messages, "\n".join(messages)


def test_no_private_import_across_units() -> None:
    offending = [
        f"{i.where()}: a private {'name' if _private(i.name) else 'module'} of {i.unit}; "
        f"import a public name of kale_ext.{i.unit} instead (export it there)"
        for i in _crossing()
        if _private(i.name) or any(_private(p) for p in i.target.split(".")[2:])
    ]
    assert not offending, "\n".join(offending)


def test_every_unit_has_a_floor() -> None:
    units = {i.source for i in imports()} | {unit_of(m) for m in _modules()}
    missing = sorted(units - FLOOR.keys())
    assert not missing, (f"units without a floor: {', '.join(missing)}; "
                         "add each to FLOORS in tests/test_layers.py")


def test_imports_point_down() -> None:
    offending = [
        f"{i.where()}: floor {FLOOR[i.unit]} ({i.unit}) is above floor {FLOOR[i.source]} "
        f"({i.source}); move the code down, or call it through a lower floor"
        for i in _crossing()
        if i.source in FLOOR and i.unit in FLOOR and FLOOR[i.unit] > FLOOR[i.source]
    ]
    assert not offending, "\n".join(offending)


def test_no_file_over_the_limit() -> None:
    over = [f"{p.relative_to(REPO)}: {n} lines" for p in sorted(ROOT.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not over, f"files over {MAX_LINES} lines (split them):\n" + "\n".join(over)


def test_lint_floors_match() -> None:
    """``make lint`` (import-linter's layers contract) checks the same floors as this test."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["type"] == "layers"]
    declared = [tuple(sorted(u.strip() for u in floor.split(":"))) for floor in layers["layers"]]
    faces = tuple(sorted(u for u in FLOORS[-1] if u != "__init__"))  # kale_ext/__init__.py
    expected = [tuple(sorted(f)) for f in FLOORS[:-1]] + [faces]        # is the container
    assert declared == expected[::-1], (declared, expected[::-1])
