"""The import rules, checked over every module's source (ARCHITECTURE.md "Layers"):

* layers: ``cli -> agent -> server -> common``; a module imports only its own layer or lower;
* pure cores do no I/O: the Raft core, the FSM (with its command handlers), the gossip core, the
  RPC frame codec and the xDS generators import none of asyncio, socket, time, random or
  threading, directly or through any lictor module they import.

Imports are read with ``ast`` (every import statement, also inside functions), so a lazy import
counts too; an import under ``if TYPE_CHECKING:`` does not run and is not counted.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {"common": 0, "server": 1, "agent": 2, "cli": 3}
BANNED = frozenset({"asyncio", "socket", "time", "random", "threading"})

#: Modules of agent/xds that drive streams and sockets; every other module there is a pure
#: generator (snapshot -> Envoy resources) or a sans-I/O state object and is checked. A new
#: driver module is added here, by name, with the reason.
XDS_DRIVERS = frozenset({
    "server.py",  # the grpc.aio ADS server: drives stream.py's state over real streams
})

PURE_CORES = [
    "lictor.server.raft.core",  # the sans-I/O Raft state machine (and quorum/progress/log/messages)
    "lictor.server.fsm",  # the FSM, plus the handler modules it loads (below)
    "lictor.common.gossip.swim",  # the SWIM core
    "lictor.common.rpc.framing",  # the RPC frame codec
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return "lictor." + ".".join(parts)


@functools.cache
def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            out[_module_name(path)] = path
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of import nodes under ``if TYPE_CHECKING:``."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
                (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
                or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")):
            for inner in node.body:
                skip.update(id(n) for n in ast.walk(inner))
    return skip


@functools.cache
def _imports(module: str) -> tuple[tuple[str, int], ...]:
    """(imported name, line) for every import in `module` that runs; ``from a import b``
    yields both ``a`` and ``a.b`` (b may be a submodule)."""
    path = _modules()[module]
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_only(tree)
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((name, node.lineno))
            out += [(f"{name}.{a.name}", node.lineno) for a in node.names]
    return tuple(out)


def _lictor_module(name: str) -> str | None:
    """The lictor module an imported name loads (its longest known prefix)."""
    mods = _modules()
    parts = name.split(".")
    for i in range(len(parts), 1, -1):
        cand = ".".join(parts[:i])
        if cand in mods:
            return cand
    return None


def _closure(start: str) -> dict[str, str]:
    """Every lictor module importing `start` runs (with their parent packages) -> why."""
    seen: dict[str, str] = {start: "the core itself"}
    stack = [start]
    while stack:
        mod = stack.pop()
        for name, line in _imports(mod):
            target = _lictor_module(name) if name.startswith("lictor.") else None
            if target is None:
                continue
            chain = [target]
            parts = target.split(".")
            chain += [".".join(parts[:i]) for i in range(2, len(parts))]
            for t in chain:
                if t in _modules() and t not in seen:
                    seen[t] = f"{_modules()[mod].relative_to(ROOT)}:{line}"
                    stack.append(t)
    return seen


def _banned_in(start: str) -> list[str]:
    found = []
    for mod, why in sorted(_closure(start).items()):
        for name, line in _imports(mod):
            if name.split(".")[0] in BANNED:
                found.append(f"{_modules()[mod].relative_to(ROOT)}:{line} imports {name} "
                             f"(reached via {why})")
    return found


def test_every_module_imports_only_its_layer_or_lower() -> None:
    wrong = []
    for mod, path in _modules().items():
        own = LAYERS[mod.split(".")[1]]
        for name, line in _imports(mod):
            parts = name.split(".")
            if parts[0] == "lictor" and len(parts) > 1 and LAYERS.get(parts[1], -1) > own:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({mod.split('.')[1]}) imports {name}")
    assert not wrong, "imports against the layer order cli -> agent -> server -> common:\n" + "\n".join(wrong)


def _fsm_handler_modules() -> list[str]:
    from lictor.server import fsm
    return list(fsm.EXTENSIONS)


def _xds_generators() -> list[str]:
    xds = ROOT / "agent" / "xds"
    if not xds.is_dir():
        return []
    return [_module_name(p) for p in sorted(xds.glob("*.py")) if p.name not in XDS_DRIVERS]


@pytest.mark.parametrize("core", PURE_CORES + _fsm_handler_modules() + _xds_generators())
def test_pure_core_does_no_io(core: str) -> None:
    assert core in _modules(), f"{core} does not exist: update PURE_CORES"
    found = _banned_in(core)
    assert not found, f"{core} must not import {sorted(BANNED)}:\n" + "\n".join(found)


def test_the_checker_sees_what_it_must() -> None:
    """The walker is not vacuous: it finds the driver's asyncio, a lazy import, and a layer
    violation planted in source it is given."""
    assert any(n == "asyncio" for n, _ in _imports("lictor.server.raft.driver"))
    assert _banned_in("lictor.server.raft.driver")
    closure = _closure("lictor.server.fsm")
    assert "lictor.server.state.store" in closure and "lictor.server.state.watch" in closure
    assert "lictor.server.raft.quorum" in _closure("lictor.server.raft.core")
    tree = ast.parse("def f():\n    import lictor.agent.agent\n")
    assert any(isinstance(n, ast.Import) for n in ast.walk(tree))


def test_raft_package_does_not_import_the_rest_of_the_server() -> None:
    """The Raft driver depends on FSMProtocol (server/raft/fsm.py), not on lictor.server.fsm."""
    wrong = []
    for mod in _modules():
        if not mod.startswith("lictor.server.raft"):
            continue
        for name, line in _imports(mod):
            if name.startswith("lictor.server.") and not name.startswith("lictor.server.raft"):
                wrong.append(f"{mod}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)
