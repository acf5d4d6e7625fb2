"""The product as a user installs it: ``pip install`` of the built wheel into a clean venv, no test
extras, then ``pip check``, every module imported, ``lictor agent -dev`` started and used with
``lictor kv``. Everything here runs the venv's own ``lictor``, never the checkout."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import AgentProcess
from tests.integration.wheelenv import LAYERS, REPO, WheelInstall, source_modules

pytestmark = pytest.mark.integration


def _run(inst: WheelInstall, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={"PATH": f"{inst.venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd)})


def test_pip_check_is_clean(wheel_install: WheelInstall, tmp_path: Path) -> None:
    res = _run(wheel_install, str(wheel_install.python), "-m", "pip", "check", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_wheel_and_sdist_carry_every_source_file(wheel_install: WheelInstall) -> None:
    wheel, sdist = wheel_install.wheel_names(), wheel_install.sdist_names()
    missing_wheel, missing_sdist = [], []
    for layer in LAYERS:
        for f in (REPO / layer).rglob("*.py"):
            rel = f.relative_to(REPO)
            if f"lictor/{rel}" not in wheel:
                missing_wheel.append(str(rel))
            if str(rel) not in sdist:
                missing_sdist.append(str(rel))
    assert not missing_wheel, f"left out of the wheel: {missing_wheel}"
    assert not missing_sdist, f"left out of the sdist: {missing_sdist}"
    assert "lictor/py.typed" in wheel


def test_every_module_imports_from_the_wheel_install(wheel_install: WheelInstall, tmp_path: Path) -> None:
    # cwd is an empty folder, so nothing from the checkout can be imported by accident
    script = (
        "import importlib, json, sys\n"
        "bad = {}\n"
        "for m in sys.argv[1:]:\n"
        "    try:\n"
        "        mod = importlib.import_module(m)\n"
        "        assert '/site-packages/' in (mod.__file__ or ''), f'imported from {mod.__file__}'\n"
        "    except BaseException as e:\n"
        "        bad[m] = f'{type(e).__name__}: {e}'\n"
        "print(json.dumps(bad))\n"
    )
    modules = source_modules()
    assert len(modules) > 100  # the walk found the tree
    res = _run(wheel_install, str(wheel_install.python), "-c", script, *modules, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {}


def test_version_comes_from_the_package_metadata(wheel_install: WheelInstall, tmp_path: Path) -> None:
    meta = _run(wheel_install, str(wheel_install.python), "-c",
                "from importlib.metadata import version; print(version('lictor'))", cwd=tmp_path)
    assert meta.returncode == 0, meta.stderr
    res = _run(wheel_install, str(wheel_install.lictor), "version", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == f"Lictor v{meta.stdout.strip()}"


def test_dev_agent_from_the_wheel_serves_kv(wheel_install: WheelInstall, tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, env={"PATH": f"{wheel_install.venv / 'bin'}:/usr/bin:/bin"})
    agent.args[:3] = [str(wheel_install.lictor)]  # the installed console script, not `python -m`
    agent.start(timeout=30)
    try:
        put = _run(wheel_install, str(wheel_install.lictor), "kv", "put", f"-http-addr={agent.addr}",
                   "app/config", '{"debug":true}', cwd=tmp_path)
        assert put.returncode == 0, put.stdout + put.stderr
        get = _run(wheel_install, str(wheel_install.lictor), "kv", "get", f"-http-addr={agent.addr}",
                   "app/config", cwd=tmp_path)
        assert get.returncode == 0, get.stderr
        assert get.stdout.strip() == '{"debug":true}'
    finally:
        agent.stop()
