"""Static checks of the source tree: an acyclic import graph, Ray imported only by ``zsltune/sweep/``, and no
absolute development paths (``/work/...``, ``/root/...``, ``/home/...``) in project files.

The import graph is read with :mod:`ast` from every ``.py`` of ``zsltune`` and ``analysis/`` (installed as
``zsltune.analysis``), imports inside functions included (they run too, only later). An edge goes to the module a
statement names: ``from zsltune.data import synth`` to ``zsltune.data.synth`` (a module), ``from zsltune.data import
load_dataset`` to ``zsltune.data`` (its ``__init__``). The parent packages Python initialises on the way are not
edges, so a package ``__init__`` that re-exports its submodules is no cycle; a submodule that imports its own
package's ``__init__`` back is one.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from _procs import project_files

REPO = Path(__file__).resolve().parent.parent
#: dotted package name -> its folder in the checkout (``zsltune.analysis`` lives in the top-level ``analysis/``)
PACKAGES = {"zsltune": "zsltune", "zsltune.analysis": "analysis"}
RAY_ALLOWED = "zsltune.sweep"  # the one package that may import ray


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py of the project's packages (``pkg/__init__.py`` is ``pkg``)."""
    out: dict[str, Path] = {}
    for pkg, folder in PACKAGES.items():
        for f in sorted((REPO / folder).rglob("*.py")):
            parts = (*pkg.split("."), *f.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """(absolute dotted name imported, line) for every import statement of a module, at any depth, plus
    ``importlib.import_module("literal")`` calls. ``from X import a`` yields ``X.a``, a module or a name in ``X``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            for alias in node.names:
                yield (mod if alias.name == "*" else f"{mod}.{alias.name}"), node.lineno
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value, node.lineno


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {project module it imports: line of the first such import}."""
    mods = _modules()
    graph: dict[str, dict[str, int]] = {m: {} for m in mods}
    for name, path in mods.items():
        for target, line in _imports(name, path):
            parts = target.split(".")
            # the longest prefix that is a project module: `import a.b.c` -> a.b.c, `from a.b import c` -> a.b.c
            # when c is a module, `from a.b import f` -> a.b
            for n in range(len(parts), 0, -1):
                cand = ".".join(parts[:n])
                if cand in mods:
                    if cand != name:
                        graph[name].setdefault(cand, line)
                    break
    return graph


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (a path a -> ... -> a) per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    sccs: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)

    cycles = []
    for comp in sccs:  # a shortest path back to the component's first module, by breadth-first search
        members, start = set(comp), min(comp)
        prev: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in prev:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w in members and w not in prev:
                        prev[w] = v
                        nxt.append(w)
            frontier = nxt
        path = [start]
        while True:
            path.append(prev[path[-1]])
            if path[-1] == start:
                break
        cycles.append(path[::-1])
    return cycles


def _where(graph: dict[str, dict[str, int]], path: list[str]) -> str:
    """``a (line 3) -> b (line 7) -> a``: each module with the line of its import of the next."""
    return " -> ".join([*(f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(path)), path[-1]])


def test_import_graph_is_read() -> None:
    """The graph sees imports inside functions and resolves ``from pkg import module`` to the module."""
    graph = import_graph()
    assert "zsltune.run" in graph["zsltune.cli"]
    assert "zsltune.data.cache" in graph["zsltune.data.text"]
    assert "zsltune.sweep" in graph["zsltune.run"]  # imported inside _run
    assert "zsltune.analysis.sweepdir" in graph["zsltune.analysis.best"]  # analysis/ read under its installed name
    assert "zsltune.analysis.cli" in graph["zsltune.cli"]
    assert _cycles({"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}) == [["a", "b", "c", "a"]]


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_where(graph, c) for c in cycles)


def test_only_the_sweep_package_imports_ray() -> None:
    mods = _modules()
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {target}"
        for name, path in mods.items()
        if name != RAY_ALLOWED and not name.startswith(RAY_ALLOWED + ".")
        for target, line in _imports(name, path)
        if target == "ray" or target.startswith("ray.")
    ]
    assert not offenders, "ray imported outside zsltune/sweep/:\n" + "\n".join(sorted(set(offenders)))


def test_one_tuner_call_site() -> None:
    """Searches and reruns reach the same single ``tune.Tuner(...)`` (zsltune/sweep/driver.py)."""
    sites = [
        f"{path.relative_to(REPO)}:{i}"
        for path in sorted([*(REPO / "zsltune").rglob("*.py"), *(REPO / "analysis").rglob("*.py")])
        for i, line in enumerate(path.read_text().splitlines(), start=1)
        if "tune.Tuner(" in line
    ]
    assert sites == ["zsltune/sweep/driver.py:" + sites[0].rsplit(":", 1)[1]] if sites else False, sites


# An absolute path at the start of a path token: not `Deep_Fragments/work/...` (a path's middle) nor a URL's path.
_ABS_DEV_PATH = re.compile(r"(?<![\w.~/-])/(?:work|root|home)/")


def _project_files() -> list[str]:
    files = project_files(REPO)
    if files is None:
        pytest.skip("not a git checkout")
    return files


def test_no_absolute_development_paths_in_project_files() -> None:
    """Project files name paths relative to the checkout (``../shared/papers/crnet.txt``), never one machine's."""
    this = Path(__file__).resolve().relative_to(REPO).as_posix()
    hits = []
    for rel in _project_files():
        path = REPO / rel
        if rel == this or not path.is_file():  # a file deleted in the working tree is still listed
            continue
        data = path.read_bytes()
        if b"\0" in data:  # binary
            continue
        for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if _ABS_DEV_PATH.search(line):
                hits.append(f"{rel}:{n}: {line.strip()[:160]}")
    assert not hits, "absolute development paths (use a path relative to the checkout):\n" + "\n".join(hits)
