"""The shipped deployment files (deploy/) load with our own config loader and join on gossip ports.

Nothing here runs Kubernetes or Nomad; it keeps the manifests from drifting away from what the
agent accepts (e.g. a retry_join naming the server RPC port 8300 instead of serf LAN 8301)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lictor.common.config import ConfigSource, load_config
from lictor.common.errors import ConfigError
from lictor.server.cluster import parse_join_address
from tests.integration.deployfiles import PLACEHOLDER_RE, fill_placeholders

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


#: per-host values for the example configs' <PLACEHOLDER>s (deploy/systemd/*.hcl)
EXAMPLE_VALUES = {"THIS_HOST_IP": "10.0.0.11", "GOSSIP_KEY": "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=",
                  "INITIAL_MANAGEMENT_TOKEN": "3f5c1a2e-8b7d-4c6e-9a0f-1b2c3d4e5f60",
                  "AGENT_TOKEN": "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"}


def hcl_configs(tmp_path: Path) -> list[Path]:
    files = []
    tls = tmp_path / "tls"  # the loader checks the TLS files are readable; their contents are
    tls.mkdir()             # the agent's business (tests/integration/test_deploy_vm.py runs them)
    for f in sorted((DEPLOY / "systemd").glob("*.hcl")):
        text = fill_placeholders(f.read_text(), EXAMPLE_VALUES).replace("/etc/lictor.d/tls/", f"{tls}/")
        for name in re.findall(r'"[^"]*/tls/([^"/]+\.pem)"', text):
            (tls / name).touch()
        p = tmp_path / f"systemd-{f.name}"
        p.write_text(text)
        files.append(p)
    for manifest in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for name, text in configmap_blocks(manifest).items():
            text = text.replace("/etc/lictor.d/tls/", f"{tls}/")
            for pem in re.findall(r'"[^"]*/tls/([^"/]+)"', text):
                (tls / pem).touch()
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


@pytest.mark.parametrize("name", ["server.hcl", "client.hcl"])
def test_a_placeholder_left_in_is_refused_naming_the_key(name: str, tmp_path: Path) -> None:
    text = (DEPLOY / "systemd" / name).read_text()
    assert {"THIS_HOST_IP", "GOSSIP_KEY", "AGENT_TOKEN"} <= set(PLACEHOLDER_RE.findall(text))
    # fill all but one, for each placeholder in turn: the agent names exactly that key
    for left, key in (("THIS_HOST_IP", "bind_addr"), ("GOSSIP_KEY", "encrypt"), ("AGENT_TOKEN", "acl.tokens.agent")):
        values = {k: v for k, v in EXAMPLE_VALUES.items() if k != left} | {left: f"<{left}>"}
        f = tmp_path / name
        f.write_text(fill_placeholders(text, values))
        with pytest.raises(ConfigError) as exc:
            load_config(ConfigSource(config_files=(str(f),)))
        assert f"{key}: placeholder <{left}> left in" in str(exc.value), str(exc.value)
