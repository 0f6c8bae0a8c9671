"""The house's layout holds: layers point one way, no import cycle, modules stay small.

Imports are read from the source (function-level ones too: a deferred import is still a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

from worker import keys

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("worker", "handlers", "emulator", "roomkeeper")
# The keys of a room's session records: read and written through `worker.rooms.records.Store`.
ROOM_RECORD_KEYS = {"room", "past_room", "past_by_room"}
# Modules that still build them outside the Store, each with its reason; the list may only shrink.
ROOM_KEYS_ELSEWHERE: dict[str, str] = {}
MAX_LINES = 400
# Over the bound today, each with its reason; the list may only shrink.
TOO_LONG: dict[str, str] = {}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `path` imports (anywhere in it)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, known) - {name} for name, path in known.items()}


def test_no_import_cycle_anywhere() -> None:
    edges = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_layers_point_one_way() -> None:
    for name, deps in graph().items():
        if name.startswith("worker"):
            assert not {d for d in deps if d.split(".")[0] in ("handlers", "roomkeeper")}, name
        if name.startswith(("worker", "handlers")):
            assert not {d for d in deps if d.startswith("emulator")}, name


def test_modules_stay_small_and_say_what_they_own() -> None:
    long = {}
    for path in modules().values():
        rel = str(path.relative_to(ROOT))
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            long[rel] = lines
        tree = ast.parse(path.read_text())
        if path.name != "__init__.py" or tree.body:
            doc = ast.get_docstring(tree)
            assert doc and doc.splitlines()[0].strip(), f"{rel}: no first docstring line"
    assert set(long) <= set(TOO_LONG), long


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"


def test_only_the_store_builds_a_rooms_session_keys() -> None:
    found = []
    for name, path in modules().items():
        if name == "worker.rooms.records" or name in ROOM_KEYS_ELSEWHERE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ROOM_RECORD_KEYS
                and isinstance(node.value, ast.Name)
                and node.value.id == "keys"
            ) or (
                isinstance(node, ast.ImportFrom)
                and node.module == "worker.keys"
                and {a.name for a in node.names} & ROOM_RECORD_KEYS
            ):
                found.append(_where(path, node))
    assert found == []


def test_no_redis_key_is_spelled_outside_worker_keys() -> None:
    found = []
    for top in (*PACKAGES, "bench", "tests"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if path == ROOT / "worker" / "keys.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.JoinedStr) and node.values:
                    node = node.values[0]
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and node.value.startswith(keys.PREFIX)
                ):
                    found.append(_where(path, node))
    assert found == []
