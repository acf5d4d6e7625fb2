"""3 servers and 5 client agents as real processes, joined by LAN gossip (issue 4).

Both layouts people use on one machine: distinct loopback addresses with Consul's default ports
(127.0.0.11-18, ports 8300/8301/8500) and one address with distinct ports. Gossip runs with
``LICTOR_GOSSIP_FAST=1`` (failures detected in about 1-2 s); see meshproc.py.
"""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lictor.agent.coordinates import Coordinate
from tests.integration.meshproc import LICTOR, Mesh, MeshAgent

pytestmark = pytest.mark.integration


def passing_nodes(a: MeshAgent, service: str) -> set[str]:
    rows = a.try_json(f"/v1/health/service/{service}?passing") or []
    return {r["Node"]["Node"] for r in rows}


def serf_status(a: MeshAgent, node: str) -> str | None:
    rows = a.try_json(f"/v1/health/node/{node}") or []
    for r in rows:
        if r["CheckID"] == "serfHealth":
            return str(r["Status"])
    return None


def member_status(a: MeshAgent, node: str) -> int | None:
    for m in a.try_json("/v1/agent/members") or []:
        if m["Name"] == node:
            return int(m["Status"])
    return None


def cli(a: MeshAgent, *args: str) -> subprocess.CompletedProcess[str]:
    """`lictor <command> -http-addr=<agent> <args>`."""
    return subprocess.run([*LICTOR, args[0], f"-http-addr={a.url}", *args[1:]], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture(scope="module", params=["distinct-addresses", "one-address"])
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp(request.param)
    m = Mesh(root, distinct_hosts=request.param == "distinct-addresses")
    try:
        m.start(timeout=60)
        yield m
    finally:
        m.stop()


def test_service_on_a_client_is_seen_by_every_agent(mesh: Mesh) -> None:
    c1 = mesh.clients[0]
    c1.json("PUT", "/v1/agent/service/register", {"Name": "web", "ID": "web-c1", "Port": 8080, "Tags": ["v1"]})
    took = mesh.wait(lambda: all(passing_nodes(a, "web") == {"c1"} for a in mesh.agents), 10, "web on c1 everywhere")
    # every agent answers the same API: client agents forward to the servers
    for a in mesh.agents:
        rows = a.json("GET", "/v1/health/service/web")
        assert [r["Service"]["ID"] for r in rows] == ["web-c1"]
        assert {c["CheckID"] for c in rows[0]["Checks"]} == {"serfHealth"}
    nodes = {n["Node"] for n in mesh.clients[3].json("GET", "/v1/catalog/nodes")}
    assert nodes == {a.name for a in mesh.agents}
    assert took < 10


def test_members_everywhere_and_cli(mesh: Mesh) -> None:
    for a in mesh.agents:
        ms = a.json("GET", "/v1/agent/members")
        assert sorted(m["Name"] for m in ms) == sorted(x.name for x in mesh.agents)
        roles = {m["Name"]: m["Tags"]["role"] for m in ms}
        assert roles == {x.name: "consul" if x.server else "node" for x in mesh.agents}
        assert all(m["Tags"]["port"] == str(x.rpc_port) for m in ms for x in mesh.servers if m["Name"] == x.name)
    out = cli(mesh.clients[1], "members")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["Node", "Address", "Status", "Type"]
    assert len(lines) == 1 + len(mesh.agents)
    assert sum(" alive " in f" {ln} " for ln in lines[1:]) == len(mesh.agents)


def test_sigkill_client_goes_critical_within_5s_then_restart_rejoins(mesh: Mesh) -> None:
    victim = mesh.clients[1]
    victim.json("PUT", "/v1/agent/service/register", {"Name": "api", "ID": "api-1", "Port": 9000})
    mesh.wait(lambda: all(passing_nodes(a, "api") == {victim.name} for a in mesh.agents), 10, "api passing")
    victim.kill()
    t0 = time.monotonic()
    observers = [a for a in mesh.agents if a is not victim]
    mesh.wait(lambda: all(serf_status(a, victim.name) == "critical" for a in observers[:4]) and
              all(not passing_nodes(a, "api") for a in observers), 5.0, "serfHealth critical, api not passing",
              step=0.02)
    took = time.monotonic() - t0
    assert took < 5.0
    # still in the catalog (failed, not left), listed as failed (4) by the others
    assert serf_status(mesh.servers[0], victim.name) == "critical"
    mesh.wait(lambda: member_status(mesh.clients[0], victim.name) == 4, 5, "member failed")
    # restart with the same data dir: it rejoins, refutes its death and is healthy again
    victim.spawn().wait_http()
    mesh.wait(lambda: all(member_status(a, victim.name) == 1 for a in mesh.agents), 20, "rejoined")
    mesh.wait(lambda: all(serf_status(a, victim.name) == "passing" for a in observers), 20, "serfHealth passing")
    # services registered over the HTTP API are not persisted: anti-entropy removed the old one
    mesh.wait(lambda: not mesh.servers[0].try_json("/v1/catalog/service/api"), 10, "stale api removed")
    victim.json("PUT", "/v1/agent/service/register", {"Name": "api", "ID": "api-1", "Port": 9000})
    mesh.wait(lambda: all(passing_nodes(a, "api") == {victim.name} for a in observers), 10, "api passing again")
    print(f"failure -> critical everywhere in {took:.2f}s")


def test_graceful_leave_deregisters_and_restart_rejoins(mesh: Mesh) -> None:
    leaver = mesh.clients[2]
    leaver.json("PUT", "/v1/agent/service/register", {"Name": "db", "ID": "db-1", "Port": 5432})
    mesh.wait(lambda: passing_nodes(mesh.servers[1], "db") == {leaver.name}, 10, "db registered")
    out = cli(leaver, "leave")
    assert out.returncode == 0, out.stderr
    assert "Graceful leave complete" in out.stdout
    assert leaver.wait_exit(15) == 0
    others = [a for a in mesh.agents if a is not leaver]
    mesh.wait(lambda: all(member_status(a, leaver.name) == 3 for a in others), 5, "left everywhere")
    mesh.wait(lambda: all(a.try_json(f"/v1/catalog/node/{leaver.name}") is None for a in others[:3]), 5,
              "node deregistered")
    assert not passing_nodes(mesh.servers[0], "db")
    # a restart joins again (retry_join) and re-registers its services through anti-entropy
    leaver.spawn().wait_http()
    mesh.wait(lambda: all(member_status(a, leaver.name) == 1 for a in mesh.agents), 20, "rejoined after leave")
    mesh.wait(lambda: serf_status(mesh.servers[0], leaver.name) == "passing", 10, "registered again")


def test_sigterm_on_a_client_leaves_gracefully(mesh: Mesh) -> None:
    c = mesh.clients[3]
    c.signal(15)  # leave_on_terminate defaults to true for clients
    assert c.wait_exit(15) == 0
    mesh.wait(lambda: member_status(mesh.servers[0], c.name) == 3, 5, "left, not failed")
    mesh.wait(lambda: mesh.servers[0].try_json(f"/v1/catalog/node/{c.name}") is None, 5, "deregistered")
    c.spawn().wait_http()
    mesh.wait(lambda: member_status(mesh.servers[2], c.name) == 1, 20, "back")


def test_user_events_reach_every_agent_with_filters(mesh: Mesh) -> None:
    c1, c5 = mesh.clients[0], mesh.clients[4]
    c1.json("PUT", "/v1/agent/service/register", {"Name": "web", "ID": "web-c1", "Port": 8080})
    ev = c5.json("PUT", "/v1/event/fire/deploy", b"v42")
    assert ev["Name"] == "deploy" and ev["LTime"] >= 1

    def got(a: MeshAgent, name: str) -> list[dict[str, Any]]:
        return [e for e in a.try_json(f"/v1/event/list?name={name}") or []]

    mesh.wait(lambda: all(any(e["ID"] == ev["ID"] for e in got(a, "deploy")) for a in mesh.agents), 10,
              "event everywhere")
    assert base64.b64decode(got(mesh.servers[0], "deploy")[-1]["Payload"]) == b"v42"
    # a service filter: only the node running "web" (c1) delivers it
    ev2 = mesh.servers[0].json("PUT", "/v1/event/fire/restart?service=^web$", b"")
    mesh.wait(lambda: any(e["ID"] == ev2["ID"] for e in got(c1, "restart")), 15, "filtered event on c1")
    time.sleep(0.5)
    assert not any(e["ID"] == ev2["ID"] for a in mesh.agents if a is not c1 for e in got(a, "restart"))
    # a blocking list returns when the next event arrives
    idx, _ = c5.indexed("/v1/event/list?name=tick")
    mesh.servers[1].json("PUT", "/v1/event/fire/tick", b"")
    t0 = time.monotonic()
    rows = c5.json("GET", f"/v1/event/list?name=tick&index={idx}&wait=10s", timeout=15)
    assert rows and time.monotonic() - t0 < 5


def server_coordinates(mesh: Mesh) -> tuple[int, dict[str, Coordinate]] | None:
    """(X-Consul-Index, {node: coordinate}) of the coordinates every server holds locally (stale
    reads: what a ``?near`` sort answered by that server uses), or None while they differ."""
    seen = [s.indexed("/v1/coordinate/nodes?stale") for s in mesh.servers]
    index, rows = seen[0]
    if any(i != index or r != rows for i, r in seen[1:]):
        return None  # a coordinate batch is still being applied somewhere
    return index, {r["Node"]: Coordinate.from_api(r["Coord"]) for r in rows if not r.get("Segment")}


def near_sorted_with_coordinates(mesh: Mesh, a: MeshAgent, path: str,
                                 timeout: float = 20.0) -> tuple[list[str], dict[str, Coordinate]]:
    """The node names of a ``?near`` list from ``a`` and the coordinates it was sorted by.

    The leader applies a coordinate batch every 0.2 s, so coordinates read separately from the
    sorted list may be newer or older than the ones the sort used. The pair is retried until
    every server held the same coordinates (same index, same rows) before and after the sorted
    read: whichever server answered it (a client agent's RPC may reach any of them) sorted by
    exactly those coordinates."""
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        before = server_coordinates(mesh)
        names = [n["Node"] for n in a.json("GET", path)]
        after = server_coordinates(mesh)
        if before is not None and before == after:
            return names, before[1]
        assert time.monotonic() < deadline, f"coordinates never held still around {path} ({attempts} tries)"
        time.sleep(0.05)


def test_coordinates_and_near_sorting(mesh: Mesh) -> None:
    s1 = mesh.servers[0]
    mesh.clients[0].json("PUT", "/v1/agent/service/register", {"Name": "web", "ID": "web-c1", "Port": 8080})
    mesh.wait(lambda: passing_nodes(s1, "web") == {"c1"}, 10, "web on c1")
    mesh.wait(lambda: len(s1.try_json("/v1/coordinate/nodes") or []) == len(mesh.agents), 20, "coordinates")
    rows = s1.json("GET", "/v1/coordinate/nodes")
    assert all(len(r["Coord"]["Vec"]) == 8 and 0 < r["Coord"]["Error"] <= 1.5 for r in rows), rows
    # Vivaldi moved them: loopback RTTs are well under 10 ms, and so are the estimates
    assert all(any(v != 0 for v in r["Coord"]["Vec"]) for r in rows), rows
    c = {r["Node"]: Coordinate.from_api(r["Coord"]) for r in rows}
    assert all(c["s1"].distance(x) < 0.05 for x in c.values()), rows
    one = mesh.clients[0].json("GET", f"/v1/coordinate/node/{mesh.clients[1].name}")
    assert one[0]["Node"] == mesh.clients[1].name
    for a, near in ((mesh.clients[0], "_agent"), (s1, mesh.servers[2].name)):
        names, coords = near_sorted_with_coordinates(mesh, a, f"/v1/catalog/nodes?near={near}")
        origin = coords[a.name if near == "_agent" else near]
        assert sorted(names) == sorted(x.name for x in mesh.agents)
        dists = [origin.distance(coords[n]) for n in names]
        assert dists == sorted(dists), (names, dists)
        # the same order on the health endpoint
        rows = a.json("GET", f"/v1/health/service/web?near={near}")
        assert [r["Node"]["Node"] for r in rows] == ["c1"]
    out = cli(mesh.clients[0], "rtt", mesh.servers[1].name)
    assert out.returncode == 0, out.stderr
    assert "rtt:" in out.stdout and "ms" in out.stdout
