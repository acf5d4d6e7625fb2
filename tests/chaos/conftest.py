"""Make the top-level ``chaos`` package importable.

pytest runs with --import-mode=importlib and ``chaos`` is not installed with lictor. Putting the
repository root on sys.path would also expose bare ``agent``/``server``/``common`` modules to
every other test (ARCHITECTURE.md: nothing may import those), so only ``chaos`` is registered.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

if "chaos" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "chaos", ROOT / "chaos" / "__init__.py", submodule_search_locations=[str(ROOT / "chaos")])
    assert _spec is not None and _spec.loader is not None
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["chaos"] = _mod
    _spec.loader.exec_module(_mod)
