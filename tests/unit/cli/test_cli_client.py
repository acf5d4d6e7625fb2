"""Client commands against a recording stub agent: exact method, path, query and body; output; exit code."""

from __future__ import annotations

import base64
import json
import socket

import pytest

from lictor.cli.main import main


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def kv_entry(key: str, value: str | None, **kw) -> dict:
    entry = {"Key": key, "Value": b64(value) if value is not None else None, "Flags": 0, "CreateIndex": 5,
             "ModifyIndex": 7, "LockIndex": 0}
    entry.update(kw)
    return entry


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- kv get ---------------------------------------------------------------------------------------


def test_kv_get_value(agent_stub, capsys) -> None:
    agent_stub.route("GET", "/v1/kv/foo/bar", json_body=[kv_entry("foo/bar", "hello")])
    assert run(capsys, "kv", "get", "foo/bar") == (0, "hello\n", "")
    r = agent_stub.last
    assert (r.method, r.path, r.query, r.body) == ("GET", "/v1/kv/foo/bar", "", b"")
    assert r.headers["User-Agent"] == "lictor-cli" and "X-Consul-Token" not in r.headers


def test_kv_get_missing_key(agent_stub, capsys) -> None:
    assert run(capsys, "kv", "get", "foo") == (1, "", "Error! No key exists at: foo\n")


def test_kv_get_token_dc_stale_and_quoting(agent_stub, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "env-token")
    agent_stub.route("GET", "/v1/kv/a b", json_body=[kv_entry("a b", "x")])
    assert run(capsys, "kv", "get", "-datacenter=dc2", "-stale", "a b")[0] == 0
    r = agent_stub.last
    assert (r.path, r.query) == ("/v1/kv/a%20b", "dc=dc2&stale")
    assert r.headers["X-Consul-Token"] == "env-token"
    monkeypatch.setenv("LICTOR_HTTP_TOKEN", "lictor-token")
    run(capsys, "kv", "get", "a b")
    assert agent_stub.last.headers["X-Consul-Token"] == "lictor-token"
    run(capsys, "kv", "get", "-token", "flag-token", "a b")
    assert agent_stub.last.headers["X-Consul-Token"] == "flag-token"


def test_kv_get_detailed_and_base64(agent_stub, capsys) -> None:
    agent_stub.route("GET", "/v1/kv/k", json_body=[kv_entry("k", "v", Flags=42, Session="sess-1")])
    code, out, _ = run(capsys, "kv", "get", "-detailed", "k")
    assert code == 0
    assert out == ("CreateIndex      5\nFlags            42\nKey              k\nLockIndex        0\n"
                   "ModifyIndex      7\nSession          sess-1\nValue            v\n")
    assert run(capsys, "kv", "get", "-base64", "k") == (0, b64("v") + "\n", "")


def test_kv_get_recurse_and_keys(agent_stub, capsys) -> None:
    agent_stub.route("GET", "/v1/kv/app", json_body=[kv_entry("app/a", "1"), kv_entry("app/b", None)])
    assert run(capsys, "kv", "get", "-recurse", "app") == (0, "app/a:1\napp/b:\n", "")
    assert agent_stub.last.query == "recurse"
    agent_stub.route("GET", "/v1/kv/app/", json_body=["app/a", "app/sub/"])
    assert run(capsys, "kv", "get", "-keys", "app/") == (0, "app/a\napp/sub/\n", "")
    assert agent_stub.last.query == "keys&separator=%2F"
    run(capsys, "kv", "get", "-keys", "-separator=", "app/")
    assert agent_stub.last.query == "keys"
    # nothing under the prefix: no output, success
    assert run(capsys, "kv", "get", "-recurse", "nothing") == (0, "", "")


def test_kv_get_requires_a_key(agent_stub, capsys) -> None:
    assert run(capsys, "kv", "get") == (1, "", "Error! Missing KEY argument\n")
    assert run(capsys, "kv", "get", "a", "b")[0] == 1
    assert agent_stub.requests == []


def test_server_error_is_reported_like_consul(agent_stub, capsys) -> None:
    agent_stub.route("GET", "/v1/kv/k", text="rpc error: No cluster leader", status=500)
    assert run(capsys, "kv", "get", "k") == (
        1, "", "Error querying agent: Unexpected response code: 500 (rpc error: No cluster leader)\n")


# -- kv put ---------------------------------------------------------------------------------------


def test_kv_put(agent_stub, capsys, tmp_path) -> None:
    agent_stub.route("PUT", "/v1/kv/foo", text="true")
    assert run(capsys, "kv", "put", "foo", "bar") == (0, "Success! Data written to: foo\n", "")
    r = agent_stub.last
    assert (r.method, r.path, r.query, r.body) == ("PUT", "/v1/kv/foo", "", b"bar")
    f = tmp_path / "data.bin"
    f.write_bytes(b"\x00from file")
    assert run(capsys, "kv", "put", "-flags=42", "foo", f"@{f}")[0] == 0
    assert (agent_stub.last.query, agent_stub.last.body) == ("flags=42", b"\x00from file")
    assert run(capsys, "kv", "put", "-base64", "foo", b64("decoded"))[0] == 0
    assert agent_stub.last.body == b"decoded"
    assert run(capsys, "kv", "put", "foo")[0] == 0
    assert agent_stub.last.body == b""


def test_kv_put_stdin(agent_stub, capsys, monkeypatch) -> None:
    import io
    import sys

    agent_stub.route("PUT", "/v1/kv/foo", text="true")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin")))
    assert run(capsys, "kv", "put", "foo", "-")[0] == 0
    assert agent_stub.last.body == b"from stdin"


def test_kv_put_cas(agent_stub, capsys) -> None:
    agent_stub.route("PUT", "/v1/kv/foo", text="false")
    assert run(capsys, "kv", "put", "-cas", "-modify-index=123", "foo", "x") == (
        1, "", "Error! Did not write to foo: CAS failed\n")
    assert agent_stub.last.query == "cas=123"
    agent_stub.route("PUT", "/v1/kv/foo", text="true")
    assert run(capsys, "kv", "put", "-cas", "foo", "x") == (0, "Success! Data written to: foo\n", "")
    assert agent_stub.last.query == "cas=0"
    assert run(capsys, "kv", "put", "-modify-index=1", "foo", "x") == (
        1, "", "Cannot specify -modify-index without -cas!\n")


def test_kv_put_acquire_release(agent_stub, capsys) -> None:
    agent_stub.route("PUT", "/v1/kv/lock", text="true")
    assert run(capsys, "kv", "put", "-acquire", "-session=s1", "lock", "me") == (
        0, "Success! Lock acquired on: lock\n", "")
    assert agent_stub.last.query == "acquire=s1"
    assert run(capsys, "kv", "put", "-release", "-session", "s1", "lock") == (
        0, "Success! Lock released on: lock\n", "")
    assert agent_stub.last.query == "release=s1"
    agent_stub.route("PUT", "/v1/kv/lock", text="false")
    assert run(capsys, "kv", "put", "-acquire", "-session=s2", "lock")[0:2] == (1, "")
    n = len(agent_stub.requests)
    assert run(capsys, "kv", "put", "-acquire", "lock") == (
        1, "", "Error! Missing -session (required with -acquire and -release)\n")
    assert len(agent_stub.requests) == n


# -- kv delete ------------------------------------------------------------------------------------


def test_kv_delete(agent_stub, capsys) -> None:
    agent_stub.route("DELETE", "/v1/kv/foo", text="true")
    assert run(capsys, "kv", "delete", "foo") == (0, "Success! Deleted key: foo\n", "")
    assert (agent_stub.last.method, agent_stub.last.query) == ("DELETE", "")
    assert run(capsys, "kv", "delete", "-recurse", "foo") == (0, "Success! Deleted keys with prefix: foo\n", "")
    assert agent_stub.last.query == "recurse"
    agent_stub.route("DELETE", "/v1/kv/foo", text="false")
    assert run(capsys, "kv", "delete", "-cas", "-modify-index=9", "foo") == (
        1, "", "Error! Did not delete key foo: CAS failed\n")
    assert agent_stub.last.query == "cas=9"
    assert run(capsys, "kv", "delete", "-cas", "-recurse", "-modify-index=9", "foo")[2] == (
        "Cannot specify both -cas and -recurse!\n")
    assert run(capsys, "kv", "delete", "-cas", "foo")[2] == "Must specify -modify-index with -cas!\n"
    assert run(capsys, "kv", "delete")[2] == "Error! Missing KEY argument\n"


# -- kv export / import ---------------------------------------------------------------------------


def test_kv_export(agent_stub, capsys) -> None:
    agent_stub.route("GET", "/v1/kv/app", json_body=[kv_entry("app/a", "1", Flags=3), kv_entry("app/b", None)])
    code, out, _ = run(capsys, "kv", "export", "app")
    assert code == 0 and agent_stub.last.query == "recurse"
    assert json.loads(out) == [{"key": "app/a", "flags": 3, "value": b64("1")}, {"key": "app/b", "flags": 0, "value": ""}]
    assert out.startswith('[\n\t{\n\t\t"key": "app/a",')
    assert run(capsys, "kv", "export", "none") == (0, "[]\n", "")


def test_kv_import(agent_stub, capsys, tmp_path) -> None:
    agent_stub.route("PUT", "/v1/kv/app/a", text="true")
    agent_stub.route("PUT", "/v1/kv/app/b", text="true")
    data = json.dumps([{"key": "app/a", "flags": 3, "value": b64("1")}, {"key": "app/b", "flags": 0, "value": ""}])
    f = tmp_path / "export.json"
    f.write_text(data)
    assert run(capsys, "kv", "import", f"@{f}") == (0, "Imported: app/a\nImported: app/b\n", "")
    puts = [(r.method, r.path, r.query, r.body) for r in agent_stub.requests]
    assert puts == [("PUT", "/v1/kv/app/a", "flags=3", b"1"), ("PUT", "/v1/kv/app/b", "", b"")]
    assert run(capsys, "kv", "import", "not json")[0] == 1
    assert run(capsys, "kv", "import", '[{"key": "k", "value": "!!!"}]')[2].startswith(
        "Error! Cannot base 64 decode value for key k")


# -- catalog --------------------------------------------------------------------------------------


def test_catalog_services(agent_stub, capsys) -> None:
    agent_stub.route("GET", "/v1/catalog/services", json_body={"web": ["v2", "v1"], "consul": [], "db": ["primary"]})
    assert run(capsys, "catalog", "services") == (0, "consul\ndb\nweb\n", "")
    assert run(capsys, "catalog", "services", "-tags") == (0, "consul\ndb      primary\nweb     v1,v2\n", "")


def test_catalog_services_for_a_node(agent_stub, capsys) -> None:
    agent_stub.route("GET", "/v1/catalog/node/n1", json_body={
        "Node": {"Node": "n1"}, "Services": {"web-1": {"Service": "web", "Tags": ["a"]},
                                             "web-2": {"Service": "web", "Tags": ["b"]}}})
    assert run(capsys, "catalog", "services", "-node=n1", "-tags") == (0, "web  a,b\n", "")
    assert run(capsys, "catalog", "services", "-node=missing") == (
        0, "", "No services match the given query - try expanding your search.\n")


def test_catalog_nodes(agent_stub, capsys) -> None:
    agent_stub.route("GET", "/v1/catalog/nodes", json_body=[
        {"Node": "worker-01", "ID": "1b662d97-8b5c-3cc2-0ac0-96f55ad423b5", "Address": "10.4.5.31",
         "Datacenter": "dc1", "TaggedAddresses": {"wan": "10.4.5.31", "lan": "10.4.5.31"}, "Meta": {"rack": "r1"}},
        {"Node": "w2", "ID": "d407a592-e93c-4d8e-8a6d-aba853d1e067", "Address": "10.4.4.158", "Datacenter": "dc1",
         "TaggedAddresses": {}, "Meta": {}},
    ])
    assert run(capsys, "catalog", "nodes") == (0, (
        "Node       ID        Address     DC\n"
        "worker-01  1b662d97  10.4.5.31   dc1\n"
        "w2         d407a592  10.4.4.158  dc1\n"), "")
    code, out, _ = run(capsys, "catalog", "nodes", "-detailed")
    assert out.splitlines() == [
        "Node       ID                                    Address     DC   TaggedAddresses               Meta",
        "worker-01  1b662d97-8b5c-3cc2-0ac0-96f55ad423b5  10.4.5.31   dc1  lan=10.4.5.31, wan=10.4.5.31  rack=r1",
        "w2         d407a592-e93c-4d8e-8a6d-aba853d1e067  10.4.4.158  dc1",
    ]


def test_catalog_nodes_for_a_service(agent_stub, capsys) -> None:
    agent_stub.route("GET", "/v1/catalog/service/web", json_body=[
        {"Node": "n1", "ID": "aaaaaaaa-0000", "Address": "10.0.0.1", "Datacenter": "dc1", "ServiceID": "web-1"},
        {"Node": "n1", "ID": "aaaaaaaa-0000", "Address": "10.0.0.1", "Datacenter": "dc1", "ServiceID": "web-2"},
    ])
    assert run(capsys, "catalog", "nodes", "-service=web", "-datacenter=dc1") == (
        0, "Node  ID        Address   DC\nn1    aaaaaaaa  10.0.0.1  dc1\n", "")
    assert agent_stub.last.query == "dc=dc1"
    agent_stub.route("GET", "/v1/catalog/service/none", json_body=[])
    assert run(capsys, "catalog", "nodes", "-service=none") == (
        0, "", "No nodes match the given query - try expanding your search.\n")


# -- services -------------------------------------------------------------------------------------


def test_services_register_from_flags(agent_stub, capsys) -> None:
    agent_stub.route("PUT", "/v1/agent/service/register", text="")
    assert run(capsys, "services", "register", "-name=web", "-port=8080", "-tag=a", "-tag=b", "-meta=env=prod",
               "-address=10.0.0.5") == (0, "Registered service: web\n", "")
    r = agent_stub.last
    assert (r.method, r.path, r.query) == ("PUT", "/v1/agent/service/register", "")
    assert r.json() == {"Name": "web", "Address": "10.0.0.5", "Port": 8080, "Tags": ["a", "b"], "Meta": {"env": "prod"}}


def test_services_register_from_files(agent_stub, capsys, tmp_path) -> None:
    agent_stub.route("PUT", "/v1/agent/service/register", text="")
    hcl = tmp_path / "web.hcl"
    hcl.write_text('service {\n  name = "web"\n  port = 80\n  check {\n    http = "http://localhost/h"\n'
                   '    interval = "10s"\n  }\n  connect { sidecar_service {} }\n}\n')
    js = tmp_path / "more.json"
    js.write_text(json.dumps({"services": [{"name": "api", "id": "api-1", "checks": [{"ttl": "30s"}]}]}))
    assert run(capsys, "services", "register", str(hcl), str(js)) == (
        0, "Registered service: web\nRegistered service: api\n", "")
    assert [r.json() for r in agent_stub.requests] == [
        {"Name": "web", "Port": 80, "Check": {"HTTP": "http://localhost/h", "Interval": "10s"},
         "Connect": {"SidecarService": {}}},
        {"Name": "api", "ID": "api-1", "Checks": [{"TTL": "30s"}]},
    ]


def test_services_register_errors(agent_stub, capsys, tmp_path) -> None:
    bad = tmp_path / "bad.hcl"
    bad.write_text("service {")
    code, _, err = run(capsys, "services", "register", str(bad))
    assert code == 1 and err.startswith(f"Error! {bad}: line ")
    assert run(capsys, "services", "register")[0] == 1
    assert run(capsys, "services", "register", "-name=x", str(bad))[2] == (
        "Error! Cannot specify both service definition flags and files\n")
    agent_stub.route("PUT", "/v1/agent/service/register", text="Invalid check: TTL must be > 0", status=400)
    assert run(capsys, "services", "register", "-name=x") == (
        1, "", "Error registering service 'x': Unexpected response code: 400 (Invalid check: TTL must be > 0)\n")
    assert agent_stub.requests[-1].json() == {"Name": "x"}


def test_services_deregister(agent_stub, capsys, tmp_path) -> None:
    agent_stub.route("PUT", "/v1/agent/service/deregister/web-1", text="")
    agent_stub.route("PUT", "/v1/agent/service/deregister/api", text="")
    assert run(capsys, "services", "deregister", "-id=web-1") == (0, "Deregistered service: web-1\n", "")
    assert (agent_stub.last.method, agent_stub.last.path, agent_stub.last.body) == (
        "PUT", "/v1/agent/service/deregister/web-1", b"")
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"services": [{"name": "web", "id": "web-1"}, {"name": "api"}]}))
    assert run(capsys, "services", "deregister", str(f)) == (
        0, "Deregistered service: web-1\nDeregistered service: api\n", "")
    assert run(capsys, "services", "deregister")[0] == 1


# -- reload / leave -------------------------------------------------------------------------------


def test_reload_and_leave(agent_stub, capsys) -> None:
    agent_stub.route("PUT", "/v1/agent/reload", text="")
    agent_stub.route("PUT", "/v1/agent/leave", text="")
    assert run(capsys, "reload") == (0, "Configuration reload triggered\n", "")
    assert (agent_stub.last.method, agent_stub.last.path, agent_stub.last.query) == ("PUT", "/v1/agent/reload", "")
    assert run(capsys, "leave", "-token=t") == (0, "Graceful leave complete\n", "")
    assert agent_stub.last.path == "/v1/agent/leave" and agent_stub.last.headers["X-Consul-Token"] == "t"
    agent_stub.route("PUT", "/v1/agent/reload", text="Permission denied", status=403)
    assert run(capsys, "reload") == (1, "", "Error reloading: Unexpected response code: 403 (Permission denied)\n")


# -- addresses and connection errors --------------------------------------------------------------


def test_http_addr_flag_and_env_precedence(agent_stub, capsys, monkeypatch) -> None:
    agent_stub.route("PUT", "/v1/agent/reload", text="")
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1")  # would be refused
    monkeypatch.setenv("LICTOR_HTTP_ADDR", f"http://{agent_stub.addr}")
    assert run(capsys, "reload")[0] == 0
    monkeypatch.setenv("LICTOR_HTTP_ADDR", "127.0.0.1:1")
    assert run(capsys, "reload", f"-http-addr={agent_stub.addr}")[0] == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_names_the_address(capsys, monkeypatch) -> None:
    port = _free_port()
    monkeypatch.setenv("CONSUL_HTTP_ADDR", f"127.0.0.1:{port}")
    monkeypatch.delenv("LICTOR_HTTP_ADDR", raising=False)
    code, out, err = run(capsys, "kv", "get", "foo")
    assert code == 1 and out == ""
    assert err == (f"Error querying agent: cannot connect to the agent at http://127.0.0.1:{port}: connection "
                   "refused (is the agent running? set -http-addr or CONSUL_HTTP_ADDR)\n")
    assert run(capsys, "leave")[2].startswith(f"Error leaving: cannot connect to the agent at http://127.0.0.1:{port}")


def test_unix_addresses_are_refused_clearly(capsys) -> None:
    code, _, err = run(capsys, "reload", "-http-addr=unix:///tmp/agent.sock")
    assert code == 1 and err == "Error! unix socket addresses are not supported yet: unix:///tmp/agent.sock\n"


@pytest.mark.parametrize("argv", [["kv", "get", "-h"], ["catalog", "nodes", "-help"], ["reload", "--help"]])
def test_subcommand_help_exits_zero(capsys, argv) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 0 and out.startswith("Usage: lictor ") and err == ""
    assert "-http-addr=<address>" in out
