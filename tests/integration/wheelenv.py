"""Lictor as users get it: the sdist and wheel built from the checkout, the wheel installed into a
fresh venv with no test extras.

The editable install the test suite runs on hid two sub-packages missing from the wheel and an
undeclared dependency; tests that must prove "what ships works" run the ``lictor`` of this venv.
One build and one venv serve a whole test session (see the ``wheel_install`` fixture).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAYERS = ("agent", "server", "common", "cli")

__all__ = ["REPO", "WheelInstall", "build_and_install", "source_modules"]


@dataclass(frozen=True)
class WheelInstall:
    dist: Path        # holds the built .whl and .tar.gz
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def lictor(self) -> Path:
        return self.venv / "bin" / "lictor"

    @property
    def wheel(self) -> Path:
        return next(self.dist.glob("lictor-*.whl"))

    @property
    def sdist(self) -> Path:
        return next(self.dist.glob("lictor-*.tar.gz"))

    def wheel_names(self) -> set[str]:
        with zipfile.ZipFile(self.wheel) as z:
            return set(z.namelist())

    def sdist_names(self) -> set[str]:
        with tarfile.open(self.sdist) as t:
            # drop the leading "lictor-<version>/"
            return {n.split("/", 1)[1] for n in t.getnames() if "/" in n}


def source_modules() -> list[str]:
    """Every module of the source tree, by the import name it has once installed."""
    mods = []
    for layer in LAYERS:
        for f in sorted((REPO / layer).rglob("*.py")):
            rel = f.relative_to(REPO / layer).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            mods.append(".".join(["lictor", layer, *parts]))
    return mods


def _run(cmd: list[str], **kw: object) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout[-3000:]}\n"
                           f"{res.stderr[-3000:]}")


def build_and_install(root: Path) -> WheelInstall:
    """``python -m build`` (an sdist, then the wheel built *from that sdist*, so a file missing from
    the sdist breaks the wheel too), then a fresh venv with ``pip install <wheel>`` and nothing else.
    Runs with the checkout's tree copied nowhere: build reads it, the venv never sees it."""
    dist = root / "dist"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)], env=env, cwd=root)
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], env=env, cwd=root)
    inst = WheelInstall(dist=dist, venv=venv)
    _run([str(inst.python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(inst.wheel)],
         env=env, cwd=root)
    return inst
