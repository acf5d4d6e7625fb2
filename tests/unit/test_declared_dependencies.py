"""Every third-party module the product imports belongs to a distribution that ``pyproject.toml``
declares in ``[project] dependencies`` (not just in the test extra, and not only pulled in by
something else: ``sortedcontainers`` once arrived only through hypothesis).

Imports are read with ``ast`` from agent/, server/, common/ and cli/, including imports inside
functions and ``try`` blocks; the module -> distribution map is the installed environment's own
(``importlib.metadata.packages_distributions``), so no alias table can drift."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAYERS = ("agent", "server", "common", "cli")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {_norm(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0]) for d in meta["dependencies"]}


def top_levels_in(source: str) -> set[str]:
    """Top-level names of the absolute imports anywhere in ``source`` (functions, try blocks too)."""
    tops = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            tops |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return tops


def imported_top_levels() -> dict[str, set[str]]:
    """Top-level module name -> files importing it."""
    found: dict[str, set[str]] = {}
    for layer in LAYERS:
        for f in (REPO / layer).rglob("*.py"):
            for top in top_levels_in(f.read_text()):
                found.setdefault(top, set()).add(str(f.relative_to(REPO)))
    return found


def test_every_third_party_import_is_declared() -> None:
    dists = packages_distributions()
    decl = declared()
    std = set(sys.stdlib_module_names) | {"lictor", "__future__"}
    problems = []
    for top, files in sorted(imported_top_levels().items()):
        if top in std:
            continue
        owners = {_norm(d) for d in dists.get(top, [])}
        if not owners:
            problems.append(f"{top}: imported by {sorted(files)[:3]} but no installed distribution provides it")
        elif not owners & decl:
            problems.append(f"{top}: from {sorted(owners)}, imported by {sorted(files)[:3]}, not declared")
    assert not problems, "\n".join(problems)


def test_the_check_sees_imports_inside_functions() -> None:
    # the walker must not stop at module level: lazy imports were how an undeclared one hid
    src = ("def f():\n    try:\n        import sortedcontainers.sortedlist\n    except ImportError:\n"
           "        from yaml.loader import SafeLoader\n    from . import sibling\n")
    assert top_levels_in(src) == {"sortedcontainers", "yaml"}
    assert "sortedcontainers" in imported_top_levels()  # the state store's import is seen
    assert "sortedcontainers" in declared()
