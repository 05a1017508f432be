"""The import architecture, read from the source with `ast` (nothing here imports the code it checks).

Three rules over every module of the project's packages:

* no import circles between modules (every strongly connected component of the import graph
  with more than one module, or a module importing itself, is reported with its cycles);
* layers only import downward: ppo_core=0, envs=1, models=2, configs=3, trainers=4, bench=5;
  a module may import from its own layer or a lower one;
* a CLI module (one with a top-level `if __name__ == "__main__":`) is an entry point, never a
  library: no other module of the packages imports it (tests may);
* the rooms of a package (its subpackages, e.g. trainers/run and trainers/backtest) import each
  other one way only: the graph of rooms has no circle.

Every import counts: module level, inside functions, under `if TYPE_CHECKING:`, in try/except.
`from pkg import name` is an edge to `pkg.name` when that is a module, else to `pkg` (its
`__init__`). Relative imports are resolved against the importing module's package. `bench/` is
a folder of scripts, not a package: its scripts import siblings as top-level names
(`from common import emit`), which resolve to `bench.common`.

The checks are plain functions (`module_graph`, `import_cycles`, `upward_imports`,
`cli_imports`) so the tests at the bottom can run them on hand-made graphs and trees.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"ppo_core": 0, "envs": 1, "models": 2, "configs": 3, "trainers": 4, "bench": 5}


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. "trainers.run.session"; a package's __init__ is the package name
    path: Path
    is_package: bool  # an __init__.py
    is_cli: bool  # has a top-level `if __name__ == "__main__":`
    tree: ast.Module = field(repr=False, compare=False)


# module -> {imported module -> sorted line numbers}
Graph = dict[str, dict[str, list[int]]]


def discover(root: Path, packages) -> dict[str, Module]:
    """Every .py file under root/<package> for each package, keyed by dotted module name."""
    modules: dict[str, Module] = {}
    for package in packages:
        base = root / package
        for path in sorted(base.rglob("*.py")):
            if any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(root).parts):
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            name = ".".join(parts)
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            modules[name] = Module(name, path, is_package, _has_main_guard(tree), tree)
    return modules


def _has_main_guard(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            sides = [node.test.left, *node.test.comparators]
            names = {s.id for s in sides if isinstance(s, ast.Name)}
            values = {s.value for s in sides if isinstance(s, ast.Constant)}
            if "__name__" in names and "__main__" in values:
                return True
    return False


def _package_of(module: Module) -> str:
    return module.name if module.is_package else module.name.rpartition(".")[0]


def _script_folder(module: Module, root: Path) -> str | None:
    """The dotted name of the module's folder when that folder is a script folder (no __init__.py)."""
    folder = module.path.parent
    if (folder / "__init__.py").exists():
        return None
    return ".".join(folder.relative_to(root).parts) or None


def _resolve(name: str, modules: dict[str, Module]) -> str | None:
    """The longest dotted prefix of name that is a known module (None: outside the packages)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def module_graph(root: Path = ROOT, packages=tuple(LAYERS)) -> tuple[dict[str, Module], Graph]:
    """Parse every module under root/<package> and return (modules, import graph)."""
    modules = discover(root, packages)
    graph: Graph = {}
    for module in modules.values():
        edges: dict[str, set[int]] = {}
        script_folder = _script_folder(module, root)
        tree = module.tree

        def add(target: str | None, line: int) -> None:
            if target is not None and target != module.name:
                edges.setdefault(target, set()).add(line)

        def absolute(name: str) -> str | None:
            if script_folder is not None and f"{script_folder}.{name}" in modules:
                return f"{script_folder}.{name}"  # a script's sibling, imported as a top-level name
            return _resolve(name, modules)

        def submodule(origin: str, name: str, relative: bool) -> str | None:
            """`from origin import name` imports the module origin.name when there is one."""
            dotted = f"{origin}.{name}"
            if not relative and script_folder is not None and f"{script_folder}.{dotted}" in modules:
                return f"{script_folder}.{dotted}"
            return dotted if dotted in modules else None

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(absolute(alias.name), node.lineno)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: against the importing module's package
                    package = _package_of(module)
                    base = package.split(".") if package else []
                    up = node.level - 1
                    if up >= len(base):
                        raise ValueError(f"{module.path}:{node.lineno}: relative import beyond the top package")
                    origin = ".".join(base[:len(base) - up] + ([node.module] if node.module else []))
                    package_target = _resolve(origin, modules)
                else:
                    origin = node.module or ""
                    package_target = absolute(origin)
                for alias in node.names:
                    target = submodule(origin, alias.name, bool(node.level)) if alias.name != "*" else None
                    add(target or package_target, node.lineno)
        graph[module.name] = {target: sorted(lines) for target, lines in sorted(edges.items())}
    return modules, graph


@lru_cache(maxsize=1)
def _project_graph() -> tuple[dict[str, Module], Graph]:
    return module_graph()


def strongly_connected_components(graph: Graph) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components in sorted order, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return sorted(components)


def elementary_cycles(graph: Graph, component: list[str], limit: int = 50) -> list[list[str]]:
    """The simple cycles inside one component, each starting at its smallest module (at most limit)."""
    members = set(component)
    cycles: list[list[str]] = []
    for start in sorted(component):
        allowed = {m for m in members if m >= start}

        def walk(path: list[str]) -> None:
            if len(cycles) >= limit:
                return
            for child in sorted(graph.get(path[-1], ())):
                if child == start:
                    cycles.append(path + [start])
                elif child in allowed and child not in path:
                    walk(path + [child])

        walk([start])
    return cycles


def import_cycles(graph: Graph) -> list[list[str]]:
    """Every import circle, as paths [a, b, ..., a]."""
    cycles = []
    for component in strongly_connected_components(graph):
        if len(component) > 1 or component[0] in graph.get(component[0], ()):
            cycles.extend(elementary_cycles(graph, component))
    return cycles


def layer_of(module: str, layers=LAYERS) -> int | None:
    return layers.get(module.split(".")[0])


def room_graph(graph: Graph, package: str) -> Graph:
    """The import graph between `package`'s rooms (its subpackages: `package.<room>.*`), with the
    importing lines; modules directly in `package` (its CLIs) are not rooms."""
    rooms: Graph = {}
    room = lambda name: name.split(".")[1] if name.startswith(package + ".") and name.count(".") >= 2 else None
    for importer, edges in graph.items():
        if room(importer) is None:
            continue
        rooms.setdefault(room(importer), {})
        for imported, lines in edges.items():
            if room(imported) not in (None, room(importer)):
                rooms[room(importer)].setdefault(room(imported), []).extend(lines)
    return rooms


def upward_imports(graph: Graph, layers=LAYERS) -> list[tuple[str, str, list[int]]]:
    """(importer, imported, lines) for every import from a lower layer into a higher one."""
    found = []
    for importer, edges in sorted(graph.items()):
        low = layer_of(importer, layers)
        for imported, lines in edges.items():
            high = layer_of(imported, layers)
            if low is not None and high is not None and high > low:
                found.append((importer, imported, lines))
    return found


def cli_imports(graph: Graph, cli_modules) -> list[tuple[str, str, list[int]]]:
    """(importer, cli module, lines) for every module that imports a CLI module."""
    cli = set(cli_modules)
    return [(importer, imported, lines) for importer, edges in sorted(graph.items())
            for imported, lines in edges.items() if imported in cli and imported != importer]


def _where(modules: dict[str, Module], module: str, lines: list[int]) -> str:
    path = modules[module].path.relative_to(ROOT)
    return ", ".join(f"{path}:{line}" for line in lines)


def _report(title: str, lines: list[str]) -> str:
    return f"{title} ({len(lines)}):\n  " + "\n  ".join(lines)


# --- the rules, on the real tree ------------------------------------------------------------------

def test_no_import_cycles():
    modules, graph = _project_graph()
    cycles = import_cycles(graph)
    lines = []
    for cycle in cycles:
        lines.append(" -> ".join(cycle) + "\n      " + "\n      ".join(
            f"{a} -> {b} ({_where(modules, a, graph[a][b])})" for a, b in zip(cycle, cycle[1:])))
    if cycles:
        pytest.fail(_report("import circles", lines), pytrace=False)


def test_layers_only_import_downward():
    modules, graph = _project_graph()
    found = upward_imports(graph)
    lines = [f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)}) at {_where(modules, a, n)}"
             for a, b, n in found]
    if found:
        pytest.fail(_report("upward imports (order: " + ", ".join(
            f"{p}={n}" for p, n in LAYERS.items()) + ")", lines), pytrace=False)


def test_cli_modules_are_not_imported_as_libraries():
    modules, graph = _project_graph()
    cli = [m.name for m in modules.values() if m.is_cli]
    found = cli_imports(graph, cli)
    lines = [f"{a} imports the CLI module {b} at {_where(modules, a, n)}" for a, b, n in found]
    if found:
        pytest.fail(_report("CLI modules imported as libraries (tests may import them; modules may not)",
                            lines), pytrace=False)


def test_the_rooms_of_trainers_import_each_other_one_way():
    modules, graph = _project_graph()
    rooms = room_graph(graph, "trainers")
    cycles = import_cycles(rooms)
    lines = [" -> ".join(cycle) + "\n      " + "\n      ".join(
        f"trainers.{a} -> trainers.{b} (lines {sorted(set(rooms[a][b]))[:5]})" for a, b in zip(cycle, cycle[1:]))
             for cycle in cycles]
    if cycles:
        pytest.fail(_report("rooms of trainers/ that import each other", lines), pytrace=False)


def test_the_walk_sees_every_package_and_their_entry_points():
    modules, graph = _project_graph()
    for package in LAYERS:
        assert any(name.split(".")[0] == package for name in modules), package
    cli = {m.name for m in modules.values() if m.is_cli}
    assert {"trainers.ppo", "trainers.evaluate", "envs.fetch", "bench.cartpole"} <= cli
    assert set(graph) == set(modules)
    assert any(layer_of(a) != layer_of(b) for a, edges in graph.items() for b in edges)


# --- the checkers can fail ------------------------------------------------------------------------

def test_cycle_finder_reports_each_circle_of_a_hand_made_graph():
    graph = {
        "a": {"b": [1]}, "b": {"c": [1], "d": [2]}, "c": {"a": [3]},  # a -> b -> c -> a
        "d": {"b": [1]},  # and b <-> d in the same component
        "e": {"e": [1]},  # a self-import
        "f": {"a": [1]}, "g": {},  # acyclic
    }
    assert strongly_connected_components(graph) == [["a", "b", "c", "d"], ["e"], ["f"], ["g"]]
    assert import_cycles(graph) == [["a", "b", "c", "a"], ["b", "d", "b"], ["e", "e"]]
    assert import_cycles({"a": {"b": [1]}, "b": {}, "c": {"a": [1], "b": [1]}}) == []


def test_layer_and_cli_checks_flag_a_hand_made_graph():
    graph = {
        "ppo_core.x": {"envs.y": [4]},  # upward
        "envs.y": {"ppo_core.x": [2]},  # downward: fine
        "models.m": {"models.n": [1], "trainers.ppo": [9]},  # upward, and a CLI
        "trainers.t": {"trainers.ppo": [3], "configs.c": [1]},  # same layer, but a CLI
        "trainers.ppo": {"trainers.t": [1]},
    }
    assert upward_imports(graph) == [("models.m", "trainers.ppo", [9]), ("ppo_core.x", "envs.y", [4])]
    assert cli_imports(graph, ["trainers.ppo"]) == [("models.m", "trainers.ppo", [9]),
                                                   ("trainers.t", "trainers.ppo", [3])]


def test_room_check_flags_two_subpackages_importing_each_other():
    graph = {
        "trainers.run.a": {"trainers.backtest.b": [3], "trainers.run.c": [4]},
        "trainers.backtest.b": {"trainers.run.c": [7]},  # backtest -> run -> backtest
        "trainers.run.c": {"trainers.checkpoints.d": [1]},
        "trainers.checkpoints.d": {}, "trainers.ppo": {"trainers.run.a": [2]},  # a CLI is no room
    }
    rooms = room_graph(graph, "trainers")
    assert rooms == {"run": {"backtest": [3], "checkpoints": [1]}, "backtest": {"run": [7]}, "checkpoints": {}}
    assert import_cycles(rooms) == [["backtest", "run", "backtest"]]
    del graph["trainers.backtest.b"]["trainers.run.c"]
    assert import_cycles(room_graph(graph, "trainers")) == []


def test_module_graph_reads_relative_lazy_and_type_checking_imports(tmp_path):
    files = {
        "pkg/__init__.py": "from .a import A\n",
        "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub import b\nA = 1\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": "def f():\n    from ..a import A\n    from . import c\n    return A\n",
        "pkg/sub/c.py": "import os\nimport pkg.sub.b as b\nfrom pkg import A\n",
        "pkg/cli.py": "import pkg.a\n\nif __name__ == \"__main__\":\n    pass\n",
        "scripts/common.py": "from pkg.sub import b\n",
        "scripts/run.py": "from common import b\nimport cli\n\nif __name__ == '__main__':\n    pass\n",
        "scripts/other.py": "import run\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules, graph = module_graph(tmp_path, ["pkg", "scripts"])
    assert graph == {
        "pkg": {"pkg.a": [1]},
        "pkg.a": {"pkg.sub.b": [3]},
        "pkg.cli": {"pkg.a": [1]},
        "pkg.sub": {},
        "pkg.sub.b": {"pkg.a": [2], "pkg.sub.c": [3]},
        "pkg.sub.c": {"pkg": [3], "pkg.sub.b": [2]},
        "scripts.common": {"pkg.sub.b": [1]},
        "scripts.other": {"scripts.run": [1]},
        "scripts.run": {"scripts.common": [1]},  # `import cli` is not a sibling: outside the tree
    }
    assert {m.name for m in modules.values() if m.is_cli} == {"pkg.cli", "scripts.run"}
    assert import_cycles(graph) == [["pkg", "pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg"],
                                    ["pkg.a", "pkg.sub.b", "pkg.a"],
                                    ["pkg.sub.b", "pkg.sub.c", "pkg.sub.b"]]
    assert cli_imports(graph, ["pkg.cli", "scripts.run"]) == [("scripts.other", "scripts.run", [1])]
