"""Servers joining and leaving, as real processes (harness: conftest.py, 50 ms Raft ticks).

* A server's graceful leave takes it out of the Raft configuration (Consul's Server.Leave and
  the leader's handleLeftMember): 3 servers joined by gossip, the leader leaves, then a follower,
  and the last server still accepts writes alone; a server that left and restarts is added back.
* retry_join is a gossip join list: legacy entries naming the servers' RPC ports still form a
  cluster, each with one clear warning, and are never dialled on the wrong protocol again.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

pytestmark = pytest.mark.integration

LICTOR = [sys.executable, "-m", "lictor.cli.main"]


def kv_put(server: Any, key: str, value: str) -> bool:
    status, raw = server.request("PUT", f"/v1/kv/{key}", value.encode(), timeout=10.0)
    return status == 200 and json.loads(raw) is True


def peers(server: Any) -> list[str]:
    return sorted(server.json("GET", "/v1/status/peers", timeout=3.0))


def raft_servers(server: Any) -> list[str]:
    conf = server.json("GET", "/v1/operator/raft/configuration?stale", timeout=3.0)
    return sorted(s["Node"] for s in conf["Servers"])


def alive_members(server: Any) -> set[str]:
    return {m["Name"] for m in server.json("GET", "/v1/agent/members", timeout=3.0) if m["Status"] == 1}


def leave(server: Any) -> None:
    out = subprocess.run([*LICTOR, "leave", f"-http-addr={server.url}"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Graceful leave complete" in out.stdout
    assert server.proc.wait(30) == 0


def test_leader_then_follower_leave_and_the_quorum_shrinks_to_one(cluster_factory: Any,
                                                                  wait_for: Any) -> None:
    c = cluster_factory(3)
    names = {s.name for s in c.servers}
    wait_for(lambda: all(alive_members(s) == names for s in c.servers), 20, "gossip: 3 alive servers")
    first = c.wait_leader()
    assert kv_put(first, "leave/before", "3")

    # 1. the leader leaves: it hands leadership over, the new leader removes it
    leave(first)
    rest = [s for s in c.servers if s is not first]
    wait_for(lambda: all(peers(s) == sorted(x.rpc_addr for x in rest) for s in rest), 15,
             "2 peers on the remaining servers")
    assert all(raft_servers(s) == sorted(x.name for x in rest) for s in rest)
    leader = c.wait_leader(among=rest)
    assert all(kv_put(s, f"leave/after-first/{s.name}", "2") for s in rest)  # a follower forwards
    log = first.log_text()
    assert "leave: removed from the raft configuration" in log
    if "leave: handed leadership to" in log:  # the usual path: the new leader removed it
        assert f"removing server {first.name}: it left the cluster (2 voters remain)" in leader.log_text()
    else:  # the transfer timed out (a very loaded box): it removed itself, as Consul's leader does
        assert "leave: removed itself from the raft configuration" in log

    # 2. a follower leaves the 2-server cluster: its own vote commits its removal, so the last
    # server is a cluster of one (before, it would have been 1 of 3 voters: no quorum)
    follower = next(s for s in rest if s is not leader)
    leave(follower)
    wait_for(lambda: peers(leader) == [leader.rpc_addr], 15, "1 peer on the last server")
    assert raft_servers(leader) == [leader.name]
    assert kv_put(leader, "leave/alone", "1")
    status, raw = leader.request("GET", "/v1/kv/leave/before?consistent")
    assert status == 200

    # 3. the first leaver restarts with its data: it asks to be added again and is promoted
    first.spawn().wait_http()
    wait_for(lambda: peers(leader) == sorted([leader.rpc_addr, first.rpc_addr]), 30,
             "the restarted server is a voter again")
    assert kv_put(first, "leave/back", "2")

    # a correct config (gossip addresses in retry_join) warns about nothing while joining and
    # never sends gossip to an RPC port
    for s in c.servers:
        noisy = [ln for ln in s.log_text().splitlines()
                 if ("[warning" in ln or "[error" in ln) and ("retry_join" in ln or "rpc connection" in ln)]
        assert noisy == [], (s.name, noisy)


def test_legacy_rpc_port_entries_form_the_cluster_with_one_warning_each(cluster_factory: Any,
                                                                        wait_for: Any) -> None:
    c = cluster_factory(3, start=False)
    for s in c.servers:  # what chaos/ and bench/ still pass: the peers' RPC ports
        s.join = [o.rpc_addr for o in c.servers if o is not s]
    c.start()
    leader = c.wait_leader()
    wait_for(lambda: peers(leader) == sorted(s.rpc_addr for s in c.servers), 20, "3 peers")
    names = {s.name for s in c.servers}
    wait_for(lambda: all(alive_members(s) == names for s in c.servers), 20, "gossip: 3 alive servers")
    assert kv_put(leader, "legacy/k", "v")
    for s in c.servers:
        text = s.log_text()
        said = Counter(re.findall(r"retry_join: (\S+) is the server RPC port of (\w+), not a gossip "
                                  r"address: joining its gossip address (\S+) instead", text))
        assert said, (s.name, text[-3000:])
        assert all(n == 1 for n in said.values()), said  # one message per entry
        by_rpc = {o.rpc_addr: o for o in c.servers}
        for rpc, name, serf in said:
            assert by_rpc[rpc].name == name and by_rpc[rpc].serf_addr == serf
        # the one gossip attempt per legacy entry that reached an RPC port, and nothing more
        assert text.count("trailing garbage") <= 2, s.name
