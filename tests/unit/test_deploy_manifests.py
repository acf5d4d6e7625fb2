"""The shipped deployment files (deploy/) load with our own config loader and join on gossip ports.

Nothing here runs Kubernetes or Nomad; it keeps the manifests from drifting away from what the
agent accepts (e.g. a retry_join naming the server RPC port 8300 instead of serf LAN 8301)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lictor.common.config import ConfigSource, load_config
from lictor.server.cluster import parse_join_address

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def configmap_blocks(path: Path) -> dict[str, str]:
    """``name.hcl: |`` literal blocks of a Kubernetes manifest, de-indented (no YAML library)."""
    out: dict[str, str] = {}
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([\w.-]+\.hcl): \|\s*$", line)
        if not m:
            continue
        body: list[str] = []
        indent = None
        for nxt in lines[i + 1:]:
            if nxt.strip() and indent is None:
                indent = len(nxt) - len(nxt.lstrip())
            if nxt.strip() and (len(nxt) - len(nxt.lstrip())) < (indent or 0):
                break
            body.append(nxt[indent or 0:])
        out[m.group(2)] = "\n".join(body) + "\n"
    return out


def hcl_configs(tmp_path: Path) -> list[Path]:
    files = sorted((DEPLOY / "systemd").glob("*.hcl"))
    for manifest in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for name, text in configmap_blocks(manifest).items():
            p = tmp_path / f"{manifest.stem}-{name}"
            p.write_text(text)
            files.append(p)
    return files


def test_every_shipped_agent_config_loads_and_joins_on_serf_lan(tmp_path: Path) -> None:
    files = hcl_configs(tmp_path)
    assert len(files) >= 3, files  # systemd server+client and the k8s server ConfigMap at least
    for f in files:
        result = load_config(ConfigSource(config_files=(str(f),)))
        joins = list(result.config.retry_join)
        assert joins, f"{f.name}: no retry_join"
        for entry in joins:
            assert parse_join_address(entry)[1] == 8301, (f.name, entry)


def test_retry_join_flags_in_job_files_name_serf_lan_ports() -> None:
    flags = []
    for f in [*sorted((DEPLOY / "nomad").glob("*.hcl")), *sorted((DEPLOY / "k8s").glob("*.yaml"))]:
        flags += [(f.name, m) for m in re.findall(r"-retry-join=([^\"\s,\]]+)", f.read_text())]
    assert len(flags) >= 6
    for name, entry in flags:
        assert parse_join_address(entry)[1] == 8301, (name, entry)


@pytest.mark.parametrize("entry", ["10.0.0.11:8300"])
def test_the_check_would_catch_an_rpc_port(entry: str) -> None:
    assert parse_join_address(entry)[1] != 8301
