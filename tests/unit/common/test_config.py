"""load_config: sources, merge order, Consul's merge rules, validation messages, warnings."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from lictor.common.config import ConfigSource, LoadResult, load_config, redact
from lictor.common.errors import ConfigError


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def load(tmp_path, *, dev: bool = False, **kw) -> LoadResult:
    if not dev:
        kw.setdefault("flags", {})
        kw["flags"] = {"data_dir": str(tmp_path / "data"), **kw["flags"]}
    return load_config(ConfigSource(dev=dev, **kw))


def error(tmp_path, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, **kw)
    return str(e.value)


# -- defaults -------------------------------------------------------------------------------------


def test_built_in_defaults(tmp_path) -> None:
    c = load(tmp_path).config
    assert (c.datacenter, c.primary_datacenter, c.domain) == ("dc1", "dc1", "consul")
    assert c.client_addr == ("127.0.0.1",) and c.bind_addr == "0.0.0.0"
    assert (c.ports.dns, c.ports.http, c.ports.https, c.ports.grpc, c.ports.serf_lan, c.ports.serf_wan,
            c.ports.server) == (8600, 8500, -1, -1, 8301, 8302, 8300)
    assert c.server is False and c.bootstrap is False and c.bootstrap_expect == 0
    assert c.check_update_interval == 300.0 and c.retry_interval == 30.0
    assert c.log_level == "info" and c.ui_enabled is False and c.raft_multiplier == 5
    assert c.leave_on_terminate is True and c.skip_leave_on_interrupt is False  # client defaults
    assert c.limits["http_max_conns_per_client"] == 200
    assert c.services == () and c.checks == ()
    assert c.listen_addresses("http") == ("127.0.0.1",)


def test_server_leave_defaults(tmp_path) -> None:
    c = load(tmp_path, flags={"server": True}).config
    assert c.leave_on_terminate is False and c.skip_leave_on_interrupt is True


def test_data_dir_required_unless_dev() -> None:
    with pytest.raises(ConfigError, match="^data_dir cannot be empty"):
        load_config(ConfigSource())
    assert load_config(ConfigSource(dev=True)).config.data_dir == ""


def test_dev_mode_defaults() -> None:
    r = load_config(ConfigSource(dev=True))
    c = r.config
    assert c.dev and c.server and c.bootstrap
    assert c.bind_addr == "127.0.0.1" and c.client_addr == ("127.0.0.1",)
    assert c.ui_enabled and c.connect_enabled and c.ports.grpc == 8502 and c.ports.grpc_tls == 8503
    assert c.log_level == "debug" and c.enable_debug and c.raft_multiplier == 1
    assert r.warnings == ()
    # the dev node ID is stable across reloads
    assert load_config(ConfigSource(dev=True)).config.node_id == c.node_id
    uuid.UUID(c.node_id)


def test_consul_dev_json_example_is_accepted_with_warnings(tmp_path) -> None:
    p = write(tmp_path / "dev.json", json.dumps({
        "ports": {"dns": 8600}, "performance": {"raft_multiplier": 1}, "enable_script_checks": True,
        "primary_datacenter": "dc1", "acl": {"enabled": False}}))
    r = load_config(ConfigSource(dev=True, config_files=(p,)))
    assert r.config.enable_script_checks and r.config.raft_multiplier == 1
    assert r.config.acl == {"enabled": False}
    assert f"{p}: acl: accepted but not used yet" in r.warnings
    assert any(w.startswith(f"{p}: enable_script_checks: script checks are enabled without ACLs")
               for w in r.warnings)


# -- merge order and rules ------------------------------------------------------------------------


def test_merge_order_files_dirs_env_hcl_flags(tmp_path) -> None:
    d = tmp_path / "conf.d"
    d.mkdir()
    write(d / "10-a.json", '{"datacenter": "from-dir-a", "node_meta": {"a": "1"}}')
    write(d / "20-b.hcl", 'datacenter = "from-dir-b"\nnode_meta { b = "2" }')
    f = write(tmp_path / "main.hcl", 'datacenter = "from-file"\nlog_level = "warn"\nnode_name = "n1"')
    # file before dir: the dir wins
    r = load(tmp_path, config_paths=(f, str(d)), config_files=(f,), config_dirs=(str(d),))
    assert r.config.datacenter == "from-dir-b"
    assert r.config.node_meta == {"a": "1", "b": "2"}
    assert r.config.log_level == "warn"
    # dir before file (command-line order): the file wins
    r = load(tmp_path, config_paths=(str(d), f), config_files=(f,), config_dirs=(str(d),))
    assert r.config.datacenter == "from-file"
    # env fragment after files, -hcl after env, flags last
    env = {"CONSUL_LOCAL_CONFIG": '{"datacenter": "from-env", "node_name": "envnode"}'}
    r = load(tmp_path, config_files=(f,), env=env)
    assert (r.config.datacenter, r.config.node_name) == ("from-env", "envnode")
    r = load(tmp_path, config_files=(f,), env=env, hcl=('datacenter = "from-hcl"',))
    assert r.config.datacenter == "from-hcl"
    r = load(tmp_path, config_files=(f,), env=env, hcl=('datacenter = "from-hcl"',),
             flags={"datacenter": "from-flag"})
    assert r.config.datacenter == "from-flag"


def test_without_config_paths_files_load_before_dirs(tmp_path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    write(d / "x.json", '{"datacenter": "dir"}')
    f = write(tmp_path / "f.json", '{"datacenter": "file"}')
    assert load(tmp_path, config_files=(f,), config_dirs=(str(d),)).config.datacenter == "dir"


def test_lictor_local_config_after_consul_local_config(tmp_path) -> None:
    env = {"CONSUL_LOCAL_CONFIG": 'datacenter = "consul"', "LICTOR_LOCAL_CONFIG": '{"datacenter": "lictor"}'}
    assert load(tmp_path, env=env).config.datacenter == "lictor"


def test_lists_append_maps_merge_scalars_overwrite(tmp_path) -> None:
    a = write(tmp_path / "a.json", json.dumps({
        "retry_join": ["a"], "ports": {"http": 1111}, "limits": {"http_max_conns_per_client": 5},
        "service": {"name": "web"}, "checks": [{"id": "c1", "ttl": "10s"}]}))
    b = write(tmp_path / "b.hcl", 'retry_join = ["b"]\nports { dns = 5353 }\nservices = [{ name = "api" }]\n'
                                   'check { id = "c2"\n ttl = "5s" }')
    r = load(tmp_path, config_files=(a, b), flags={"retry_join": ["c"], "ports.https": 8501})
    c = r.config
    assert c.retry_join == ("a", "b", "c")
    assert (c.ports.http, c.ports.dns, c.ports.https) == (1111, 5353, 8501)
    assert c.limits["http_max_conns_per_client"] == 5 and c.limits["rpc_max_burst"] == 1000
    assert [(s.source, s.path, s.data["name"]) for s in c.services] == [(a, "service", "web"), (b, "services[0]", "api")]
    assert [(s.source, s.path, s.data["id"]) for s in c.checks] == [(a, "checks[0]", "c1"), (b, "check", "c2")]


def test_client_addr_is_replaced_not_appended(tmp_path) -> None:
    a = write(tmp_path / "a.json", '{"client_addr": "0.0.0.0 ::1"}')
    assert load(tmp_path, config_files=(a,)).config.client_addr == ("0.0.0.0", "::1")
    assert load(tmp_path, config_files=(a,), flags={"client_addr": "10.0.0.1"}).config.client_addr == ("10.0.0.1",)


def test_hcl_multiple_service_blocks_keep_their_paths(tmp_path) -> None:
    f = write(tmp_path / "s.hcl", 'service { name = "a" }\nservice {\n name = "b"\n connect { sidecar_service {} }\n}')
    c = load(tmp_path, config_files=(f,)).config
    assert [(s.path, s.data) for s in c.services] == [
        ("service[0]", {"name": "a"}), ("service[1]", {"name": "b", "connect": {"sidecar_service": {}}})]


def test_dir_skips_other_files_with_a_warning(tmp_path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    write(d / "README.md", "hi")
    write(d / "a.json", "{}")
    r = load(tmp_path, config_dirs=(str(d),))
    assert r.warnings == (f"{d / 'README.md'}: skipped: only .json and .hcl files are read from a config directory",)


def test_config_dir_must_be_a_directory(tmp_path) -> None:
    f = write(tmp_path / "x.json", "{}")
    assert error(tmp_path, config_dirs=(f,)) == f"{f}: -config-dir: not a directory"
    missing = str(tmp_path / "missing")
    assert error(tmp_path, config_dirs=(missing,)) == f"{missing}: -config-dir: no such directory"


def test_reload_with_the_same_source_gives_the_same_config(tmp_path) -> None:
    f = write(tmp_path / "a.hcl", 'service { name = "web" }')
    source = ConfigSource(config_files=(f,), flags={"data_dir": str(tmp_path / "data")})
    first, second = load_config(source), load_config(source)
    assert first == second
    write(tmp_path / "a.hcl", 'service { name = "api" }')
    assert load_config(source).config.services[0].data == {"name": "api"}


# -- node ID --------------------------------------------------------------------------------------


def test_node_id_is_generated_and_persisted_in_data_dir(tmp_path) -> None:
    c = load(tmp_path).config
    assert (tmp_path / "data" / "node-id").read_text() == c.node_id
    assert load(tmp_path).config.node_id == c.node_id


def test_node_id_configured_and_validated(tmp_path) -> None:
    nid = "ADF4238A-882B-9DDC-4A9D-5B6758E4159E"
    assert load(tmp_path, flags={"node_id": nid}).config.node_id == nid.lower()
    assert error(tmp_path, flags={"node_id": "nope"}).startswith(
        "command-line flags: node_id: invalid node ID 'nope': must be a UUID")


def test_corrupt_node_id_file_is_an_error(tmp_path) -> None:
    (tmp_path / "data").mkdir()
    write(tmp_path / "data" / "node-id", "garbage")
    assert error(tmp_path) == f"{tmp_path / 'data' / 'node-id'}: invalid node ID in file: 'garbage'"


# -- validation messages name the source and the key path -----------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('ports { http = "abc" }', 'ports.http: expected an integer port 0-65535 (or -1 to disable), got "abc"'),
        ("ports { dns = 70000 }", "ports.dns: expected an integer port 0-65535 (or -1 to disable), got 70000"),
        ("ports { server = -1 }", "ports.server: expected a port 1-65535 (this one cannot be disabled), got -1"),
        ('datacenter = "dc 1"', "datacenter: invalid datacenter 'dc 1': use only a-z, 0-9, '_' and '-'"),
        ('bind_addr = "nope"', 'bind_addr: expected an IP address, got "nope"'),
        ('bind_addr = "1.2.3.4 5.6.7.8"', 'bind_addr: expected a single IP address, got "1.2.3.4 5.6.7.8"'),
        ('client_addr = "{{ GetPrivateIP }}"',
         'client_addr: go-sockaddr templates are not supported yet, got "{{ GetPrivateIP }}"'),
        ('addresses { http = "unix:///tmp/x" }', 'addresses.http: unix sockets are not supported yet, got "unix:///tmp/x"'),
        ('advertise_addr = "0.0.0.0"', "advertise_addr: cannot be 0.0.0.0: advertise an address others can reach"),
        ('retry_interval = "10x"', "retry_interval: invalid duration '10x'"),
        ('check_update_interval = true', 'check_update_interval: expected a duration like "10s", got true'),
        ('reconnect_timeout = "1h"', "reconnect_timeout: must be at least 8h"),
        ('log_level = "loud"', "log_level: invalid log level 'loud' (use trace, debug, info, warn or err)"),
        ("server = 3", "server: expected true or false, got 3"),
        ("bootstrap_expect = 3", "bootstrap_expect: requires server mode (server = true, or -server)"),
        ("bootstrap = true", "bootstrap: requires server mode (server = true, or -server)"),
        ("server = true\nbootstrap_expect = 0", "bootstrap_expect: expected a number of servers >= 1, got 0"),
        ('retry_join = [1]', "retry_join: item 0: expected a string, got 1"),
        ('node_meta = { "consul-x" = "y" }', 'node_meta.consul-x: the "consul-" prefix is reserved'),
        ('node_meta = { k = ["y"] }', 'node_meta: k: expected a string value, got ["y"]'),
        ("performance { raft_multiplier = 11 }", "performance.raft_multiplier: must be between 1 and 10, got 11"),
        ('ports = "x"', 'ports: expected an object, got "x"'),
        ('services = ["x"]', 'services[0]: expected an object, got "x"'),
        ("ports {\n http = 9000\n https = 9000\n}", "ports.https: ports.http and ports.https both use port 9000 on the same address"),
        ("limits = 3", "limits: expected an object, got 3"),
    ],
)
def test_validation_errors_name_file_and_key_path(tmp_path, text: str, message: str) -> None:
    f = write(tmp_path / "bad.hcl", text)
    got = error(tmp_path, config_files=(f,))
    assert got.startswith(f"{f}: {message}"), got


def test_json_errors_name_the_json_file(tmp_path) -> None:
    f = write(tmp_path / "bad.json", '{"ports": {"grpc": "8502x"}}')
    assert error(tmp_path, config_files=(f,)) == (
        f'{f}: ports.grpc: expected an integer port 0-65535 (or -1 to disable), got "8502x"')


def test_weakly_typed_values_like_consul(tmp_path) -> None:
    f = write(tmp_path / "a.json", '{"ports": {"http": "8501"}, "server": "true", "bootstrap_expect": "3"}')
    c = load(tmp_path, config_files=(f,)).config
    assert (c.ports.http, c.server, c.bootstrap_expect) == (8501, True, 3)


def test_bootstrap_and_bootstrap_expect_are_mutually_exclusive(tmp_path) -> None:
    f = write(tmp_path / "a.hcl", "server = true\nbootstrap = true")
    got = error(tmp_path, config_files=(f,), flags={"bootstrap_expect": 3})
    assert got == ("command-line flags: bootstrap_expect: bootstrap_expect and bootstrap are mutually "
                   f"exclusive (bootstrap was set by {f})")


def test_bootstrap_expect_not_allowed_in_dev_mode() -> None:
    with pytest.raises(ConfigError, match="^command-line flags: bootstrap_expect: not allowed in dev mode"):
        load_config(ConfigSource(dev=True, flags={"bootstrap_expect": 1}))


def test_bootstrap_expect_warnings(tmp_path) -> None:
    assert load(tmp_path, flags={"server": True, "bootstrap_expect": 1}).warnings == (
        "command-line flags: bootstrap_expect: 1 is the same as bootstrap mode: this server elects itself",)
    assert "no failure tolerance" in load(tmp_path, flags={"server": True, "bootstrap_expect": 2}).warnings[0]
    assert "even number" in load(tmp_path, flags={"server": True, "bootstrap_expect": 4}).warnings[0]
    assert load(tmp_path, flags={"server": True, "bootstrap_expect": 3}).warnings == ()


def test_errors_from_env_and_hcl_fragments_are_named(tmp_path) -> None:
    assert error(tmp_path, env={"CONSUL_LOCAL_CONFIG": '{"server": "maybe"}'}) == (
        '$CONSUL_LOCAL_CONFIG: server: expected true or false, got "maybe"')
    assert error(tmp_path, hcl=("ports { http = -2 }",)).startswith("-hcl: ports.http: expected an integer port")
    assert error(tmp_path, env={"LICTOR_LOCAL_CONFIG": "{nope"}).startswith(
        "$LICTOR_LOCAL_CONFIG: line 1, column 2: invalid JSON")


# -- warnings -------------------------------------------------------------------------------------


def test_unknown_keys_warn_with_file_and_path(tmp_path) -> None:
    f = write(tmp_path / "a.hcl", 'bogus = 1\nports { htp = 1 }\nconnect { enabled = true\n wat = 2 }')
    r = load(tmp_path, config_files=(f,))
    assert r.warnings == (
        f"{f}: bogus: unknown configuration key (ignored)",
        f"{f}: ports.htp: unknown configuration key (ignored)",
        f"{f}: connect.wat: unknown configuration key (ignored)",
    )


def test_known_but_unused_keys_warn_and_silent_ones_do_not(tmp_path) -> None:
    f = write(tmp_path / "a.json", json.dumps({
        "telemetry": {"prometheus_retention_time": "1m"}, "tls": {"defaults": {}},
        "connect": {"ca_config": {"leaf_cert_ttl": "72h"}}, "disable_update_check": True,
        "disable_anonymous_signature": True, "encrypt": "c2VjcmV0c2VjcmV0c2VjcmV0MTI="}))
    r = load(tmp_path, config_files=(f,))
    assert r.warnings == (
        f"{f}: telemetry: accepted but not used yet",
        f"{f}: connect.ca_config: accepted but not used yet",
    )  # encrypt is used since issue 4 (gossip keyring)
    assert r.config.encrypt == "c2VjcmV0c2VjcmV0c2VjcmV0MTI="
    assert "c2VjcmV0" not in repr(r.config)
    assert r.config.raw["encrypt"] == "hidden"


def test_legacy_ui_key(tmp_path) -> None:
    f = write(tmp_path / "a.json", '{"ui": true}')
    assert load(tmp_path, config_files=(f,)).config.ui_enabled is True
    assert load(tmp_path, config_files=(f,), flags={"ui_config.enabled": False}).config.ui_enabled is False


def test_raw_is_redacted_and_lists_services(tmp_path) -> None:
    f = write(tmp_path / "a.json", json.dumps({
        "acl": {"enabled": True, "tokens": {"agent": "s3cret", "initial_management": "m"}},
        "service": {"name": "web", "token": "t0k"}, "datacenter": "dc9"}))
    raw = load(tmp_path, config_files=(f,)).config.raw
    assert raw["acl"] == {"enabled": True, "tokens": {"agent": "hidden", "initial_management": "hidden"}}
    assert raw["services"] == [{"name": "web", "token": "hidden"}]
    assert raw["datacenter"] == "dc9"
    json.dumps(dict(raw))  # serialisable for /v1/agent/self


def test_redact_leaves_non_secrets() -> None:
    assert redact({"a": 1, "token": "", "x": [{"secret_id": "s"}]}) == {"a": 1, "token": "", "x": [{"secret_id": "hidden"}]}


def test_datacenter_is_lowercased(tmp_path) -> None:
    assert load(tmp_path, flags={"datacenter": "DC2"}).config.datacenter == "dc2"


def test_node_name_defaults_to_hostname(tmp_path) -> None:
    import socket

    assert load(tmp_path).config.node_name == socket.gethostname()


def test_invalid_dns_node_name_warns(tmp_path) -> None:
    r = load(tmp_path, flags={"node_name": "my_node"})
    assert r.warnings == ("command-line flags: node_name: 'my_node' is not a valid DNS label: "
                          "the node will not be discoverable via DNS",)


def test_data_dir_must_be_a_directory(tmp_path) -> None:
    f = write(tmp_path / "file", "x")
    assert error(tmp_path, flags={"data_dir": f}) == f"command-line flags: data_dir: {f!r} exists and is not a directory"


def test_addresses_override_client_addr(tmp_path) -> None:
    f = write(tmp_path / "a.hcl", 'addresses { http = "0.0.0.0" }')
    c = load(tmp_path, config_files=(f,)).config
    assert c.listen_addresses("http") == ("0.0.0.0",) and c.listen_addresses("dns") == ("127.0.0.1",)
    assert os.path.isdir(tmp_path / "data")


def test_bind_addresses_alias(tmp_path) -> None:
    c = load(tmp_path, flags={"client_addr": "10.0.0.1 10.0.0.2"}).config
    assert c.bind_addresses("http") == c.listen_addresses("http") == ("10.0.0.1", "10.0.0.2")
