"""main(): dispatch, version, and the agent command's hand-off to lictor.agent.run."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

from lictor.cli.main import main
from lictor.common.config import ConfigSource, LoadResult


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def fake_agent(monkeypatch):
    calls: list[tuple[ConfigSource, LoadResult]] = []
    module = types.ModuleType("lictor.agent.run")

    def run_agent(source: ConfigSource, first: LoadResult) -> int:
        calls.append((source, first))
        return 7

    module.run_agent = run_agent  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lictor.agent.run", module)
    return calls


def test_usage_and_unknown_command(capsys) -> None:
    code, out, err = run(capsys, "--help")
    assert code == 0 and out.startswith("Usage: lictor [--version] [--help] <command> [<args>]")
    for name in ("agent", "catalog", "kv", "leave", "reload", "services", "version"):
        assert f"    {name} " in out
    code, out, err = run(capsys, "frobnicate")
    assert code == 1 and err.startswith("Unknown command: 'frobnicate'\nUsage: lictor")
    assert run(capsys)[0] == 1


def test_group_usage(capsys) -> None:
    code, out, _ = run(capsys, "kv", "-h")
    assert code == 0 and "Subcommands:" in out and "    put       Sets or updates data in the KV store" in out
    code, _, err = run(capsys, "kv", "nope")
    assert code == 1 and err.startswith("Unknown subcommand: kv nope")
    assert run(capsys, "kv")[0] == 1


def test_version(capsys) -> None:
    code, out, _ = run(capsys, "version")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Lictor v0.1.0" and lines[1].startswith("Protocol 2 spoken by default")
    assert run(capsys, "--version")[1] == out


def test_unknown_flag_prints_go_message_and_usage(capsys) -> None:
    code, out, err = run(capsys, "version", "-x")
    assert code == 1 and out == ""
    assert err.startswith("flag provided but not defined: -x\nUsage: lictor version")


def test_agent_dev_hands_off_to_run_agent(capsys, fake_agent, monkeypatch) -> None:
    monkeypatch.setenv("CONSUL_LOCAL_CONFIG", '{"node_meta": {"from": "env"}}')
    code, out, err = run(capsys, "agent", "-dev", "-http-port=8600", "-dns-port", "8601", "-node=n1",
                         "-retry-join=a", "-retry-join=b", "-ui=false", "-node-meta=rack:r1", "-log-level=warn")
    assert code == 7 and err == ""
    (source, first), = fake_agent
    assert source.dev is True
    assert dict(source.flags) == {"ports.http": 8600, "ports.dns": 8601, "node_name": "n1",
                                  "retry_join": ["a", "b"], "ui_config.enabled": False,
                                  "node_meta": {"rack": "r1"}, "log_level": "warn"}
    assert source.env["CONSUL_LOCAL_CONFIG"] == '{"node_meta": {"from": "env"}}'
    c = first.config
    assert (c.ports.http, c.ports.dns, c.node_name, c.retry_join, c.ui_enabled, c.log_level) == (
        8600, 8601, "n1", ("a", "b"), False, "warn")
    assert c.node_meta == {"from": "env", "rack": "r1"}
    # the source is reusable for reload
    from lictor.common.config import load_config

    assert load_config(source).config == first.config


def test_agent_config_paths_keep_command_line_order(capsys, fake_agent, tmp_path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.json").write_text('{"datacenter": "dir"}')
    f = tmp_path / "f.hcl"
    f.write_text('datacenter = "file"')
    run(capsys, "agent", "-dev", f"-config-dir={d}", "-config-file", str(f))
    source, first = fake_agent[-1]
    assert source.config_paths == (str(d), str(f)) and source.config_files == (str(f),)
    assert source.config_dirs == (str(d),)
    assert first.config.datacenter == "file"
    run(capsys, "agent", "-dev", f"-config-file={f}", f"-config-dir={d}")
    assert fake_agent[-1][1].config.datacenter == "dir"


def test_agent_hcl_flag(capsys, fake_agent) -> None:
    assert run(capsys, "agent", "-dev", "-hcl", 'service { name = "web" }')[0] == 7
    assert [s.data for s in fake_agent[-1][1].config.services] == [{"name": "web"}]


def test_agent_config_error(capsys, fake_agent, tmp_path) -> None:
    f = tmp_path / "a.hcl"
    f.write_text('ports { http = "abc" }')
    code, out, err = run(capsys, "agent", "-dev", f"-config-file={f}")
    assert code == 1 and out == "" and fake_agent == []
    assert err == f'==> {f}: ports.http: expected an integer port 0-65535 (or -1 to disable), got "abc"\n'
    assert run(capsys, "agent")[2] == "==> data_dir cannot be empty (set data_dir in a config file, or -data-dir)\n"


def test_agent_warnings_are_printed(capsys, fake_agent, tmp_path) -> None:
    f = tmp_path / "a.json"
    f.write_text('{"bogus": 1}')
    code, _, err = run(capsys, "agent", "-dev", f"-config-file={f}")
    assert code == 7 and err == f"==> WARNING: {f}: bogus: unknown configuration key (ignored)\n"


def test_agent_server_flags(capsys, fake_agent, tmp_path) -> None:
    code, _, err = run(capsys, "agent", "-server", "-bootstrap-expect=3", f"-data-dir={tmp_path}",
                       "-bind=10.0.0.1", "-client", "0.0.0.0", "-datacenter=east")
    assert code == 7, err
    c = fake_agent[-1][1].config
    assert (c.server, c.bootstrap_expect, c.data_dir, c.bind_addr, c.client_addr, c.datacenter) == (
        True, 3, str(tmp_path), "10.0.0.1", ("0.0.0.0",), "east")


def test_agent_bad_flag_value(capsys, fake_agent) -> None:
    code, _, err = run(capsys, "agent", "-http-port=abc")
    assert code == 1 and err.startswith('invalid value "abc" for flag -http-port: parse error\nUsage: lictor agent')


def test_agent_help_lists_flags(capsys) -> None:
    code, out, _ = run(capsys, "agent", "-h")
    assert code == 0
    for flag in ("-dev", "-server", "-bootstrap", "-bootstrap-expect=<int>", "-data-dir=<path>", "-config-file=<path>",
                 "-config-dir=<path>", "-bind=<ip>", "-client=<ip>", "-advertise=<ip>", "-http-port=<int>",
                 "-https-port=<int>", "-grpc-port=<int>", "-dns-port=<int>", "-serf-lan-port=<int>",
                 "-server-port=<int>", "-node=<name>", "-node-id=<uuid>", "-datacenter=<name>", "-retry-join=<addr>",
                 "-log-level=<level>", "-log-json", "-enable-script-checks", "-enable-local-script-checks", "-ui",
                 "-hcl=<string>"):
        assert f"\n  {flag}\n" in out, flag


def test_console_script_end_to_end(agent_stub) -> None:
    """The installed ``lictor`` entry point, as a subprocess, against the stub agent."""
    import base64

    agent_stub.route("GET", "/v1/kv/greeting", json_body=[{"Key": "greeting", "Value": base64.b64encode(b"hi").decode(),
                                                           "Flags": 0, "CreateIndex": 1, "ModifyIndex": 1}])
    exe = os.path.join(os.path.dirname(sys.executable), "lictor")
    env = {**os.environ, "CONSUL_HTTP_ADDR": agent_stub.addr}
    done = subprocess.run([exe, "kv", "get", "greeting"], capture_output=True, text=True, env=env, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, "hi\n", "")
    done = subprocess.run([exe, "kv", "get", "missing"], capture_output=True, text=True, env=env, timeout=30)
    assert (done.returncode, done.stderr) == (1, "Error! No key exists at: missing\n")
    done = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.startswith("Lictor v0.1.0\n")
