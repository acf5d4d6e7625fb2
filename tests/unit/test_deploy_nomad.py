"""deploy/nomad: the jobs parsed with python-hcl2 and checked against the agent itself. The task
args are parsed by `lictor agent`'s real flag parser after Nomad's interpolation
(``${NOMAD_PORT_x}``, ``${attr...}``, ``${NOMAD_SECRETS_DIR}``), the templates rendered with a
job's variable, and the whole configuration loaded by the real loader: the ports the job reserves
are the ports the agent binds, the volume is its data dir, ``count`` is ``bootstrap_expect``.
Nomad itself is not run here (it is not packaged for Debian); see deploy/README.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hcl2
import pytest

from lictor.cli.main import _agent_flags, agent_source_from_flags
from lictor.common.config import RuntimeConfig, load_config
from tests.integration.deployfiles import DEPLOY

VARIABLES = {"gossip_key": "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=",
             "initial_management_token": "3f5c1a2e-8b7d-4c6e-9a0f-1b2c3d4e5f60",
             "agent_token": "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
             "ca_pem": "ca", "server_pem": "cert", "server_key_pem": "key", "client_pem": "cert", "client_key_pem": "key"}


def _plain(value: Any) -> Any:
    """python-hcl2's output without its markers; repeated blocks stay lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def load_job(name: str) -> tuple[str, dict[str, Any]]:
    opts = hcl2.SerializationOptions(with_comments=False, strip_string_quotes=True, preserve_heredocs=False)
    data = _plain(hcl2.loads((DEPLOY / "nomad" / name).read_text(), serialization_options=opts))
    [job] = data["job"]
    [(job_name, body)] = job.items()
    return job_name, body


def labelled(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: v for b in blocks for k, v in b.items()}


def render_template(data: str, job: str) -> str:
    """The two Go-template forms the jobs use: ``{{ with nomadVar "nomad/jobs/<job>" }}`` (the
    path a job may read without an ACL policy) ... ``{{ end }}``, and ``{{ .key }}``."""
    paths = re.findall(r'\{\{ with nomadVar "([^"]+)" \}\}', data)
    assert paths and set(paths) == {f"nomad/jobs/{job}"}, paths
    out = re.sub(r'\{\{ with nomadVar "[^"]+" \}\}|\{\{ end \}\}', "", data)
    out = re.sub(r"\{\{ \.(\w+) \}\}", lambda m: VARIABLES[m.group(1)], out)
    assert "{{" not in out, out
    return out


def run_task(job_name: str, group: dict[str, Any], task: dict[str, Any], tmp: Path) -> tuple[list[str], RuntimeConfig]:
    """Interpolate and render as a Nomad client would, then parse and load as the agent would."""
    [network] = group["network"]
    ports = {label: spec["static"] for label, spec in labelled(network["port"]).items()}
    [config] = task["config"]
    secrets = tmp / "secrets"
    secrets.mkdir()
    env = {"NOMAD_SECRETS_DIR": str(secrets), "attr.unique.network.ip-address": "10.0.0.11",
           "node.unique.name": "nomad-client-1", **{f"NOMAD_PORT_{k}": str(v) for k, v in ports.items()}}

    def interpolate(arg: str) -> str:
        out = re.sub(r"\$\{([^}]+)\}", lambda m: env[m.group(1)], arg)
        return out

    for t in task.get("template", []):
        # docker mounts the task's secrets/ at /secrets
        text = render_template(t["data"], job_name).replace('"/secrets/', f'"{secrets}/')
        (tmp / t["destination"]).write_text(text)
    args = [interpolate(a) for a in config["args"]]
    assert args[0] == "agent"
    parsed = _agent_flags().parse(args[1:])
    assert not parsed.args, parsed.args
    data_dir = parsed["data-dir"]
    args = [a.replace(f"-data-dir={data_dir}", f"-data-dir={tmp / 'data'}") for a in args]
    cfg = load_config(agent_source_from_flags(_agent_flags().parse(args[1:]), env={})).config
    # every port the job reserves is the one the agent binds, and the docker task maps them all
    assert set(config["ports"]) == set(ports)
    bound = {"http": cfg.ports.http, "server": cfg.ports.server, "serf_lan": cfg.ports.serf_lan,
             "grpc": cfg.ports.grpc}
    for label, port in ports.items():
        assert bound[label] == port, label
    assert config["network_mode"] == network["mode"] == "host"
    assert task["driver"] == "docker" and config["image"].startswith("lictor:")
    assert task["kill_signal"] == "SIGTERM"
    return [*args[:1], *[a for a in config["args"][1:]]], cfg


def test_server_job(tmp_path: Path) -> None:
    name, job = load_job("lictor-servers.nomad.hcl")
    assert job["type"] == "service"
    [groups] = [labelled(job["group"])]
    [(_, group)] = groups.items()
    [(_, task)] = labelled(group["task"]).items()
    assert group["count"] == 3
    assert {"operator": "distinct_hosts", "value": "true"} in group["constraint"]
    assert group["update"][0]["max_parallel"] == 1
    volumes = labelled(group["volume"])
    raw_args, cfg = run_task(name, group, task, tmp_path)
    assert cfg.server and cfg.bootstrap_expect == group["count"]
    # the host volume is mounted where the agent keeps its data
    [mount] = task["volume_mount"]
    assert volumes[mount["volume"]] == {"type": "host", "source": "lictor-data", "read_only": False}
    assert f"-data-dir={mount['destination']}" in raw_args
    assert cfg.encrypt and cfg.acl["default_policy"] == "deny" and cfg.acl["tokens"]["initial_management"]
    assert cfg.tls.internal_rpc.verify_server_hostname and cfg.raft_multiplier == 1
    assert cfg.bind_addr == "10.0.0.11" and cfg.node_name == "nomad-client-1"


def test_client_job(tmp_path: Path) -> None:
    name, job = load_job("lictor-clients.nomad.hcl")
    assert job["type"] == "system"
    [(_, group)] = labelled(job["group"]).items()
    [(_, task)] = labelled(group["task"]).items()
    _, cfg = run_task(name, group, task, tmp_path)
    assert not cfg.server
    assert (cfg.ports.http, cfg.ports.grpc) == (8500, 8502)
    assert cfg.encrypt and cfg.acl["tokens"]["agent"] == VARIABLES["agent_token"]
    assert cfg.client_addr == ("127.0.0.1",) or "127.0.0.1" in cfg.client_addr


@pytest.mark.parametrize("job", ["lictor-servers.nomad.hcl", "lictor-clients.nomad.hcl"])
def test_a_mismatched_port_would_be_caught(job: str, tmp_path: Path) -> None:
    # the check is real: a job whose reserved port differs from the flag it passes fails it
    name, body = load_job(job)
    [(_, group)] = labelled(body["group"]).items()
    [(_, task)] = labelled(group["task"]).items()
    task["config"][0]["args"] = [a.replace("${NOMAD_PORT_http}", "8511") for a in task["config"][0]["args"]]
    with pytest.raises(AssertionError, match="http"):
        run_task(name, group, task, tmp_path)
