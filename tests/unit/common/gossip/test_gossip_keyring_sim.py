"""Gossip encryption key rotation on the simulated network (SimNetwork with a Keyring per
member: what each member sends is sealed with its primary key, what it receives is opened with
any installed key, exactly as the UDP driver does). Simulated time: no sleeps, no margins."""

from __future__ import annotations

from lictor.common.gossip.keyring import Keyring, generate_key
from lictor.common.gossip.sim import SimNetwork
from lictor.common.gossip.swim import EventKind, SwimConfig


def encrypted_cluster(n: int, key: str, seed: int = 11) -> SimNetwork:
    net = SimNetwork(seed=seed, config=SwimConfig.lan)
    first = net.add("node0", keyring=Keyring([key]))
    for i in range(1, n):
        net.add(f"node{i}", keyring=Keyring([key]))
        net.join(f"node{i}", [first.name])
    assert net.run_until(net.now + 60, stop=net.converged), "cluster did not converge"
    return net


def keyring(net: SimNetwork, name: str) -> Keyring:
    ring = net.members[name].keyring
    assert ring is not None
    return ring


def test_rotating_the_key_member_by_member_keeps_the_cluster_converged() -> None:
    old, new = generate_key(), generate_key()
    net = encrypted_cluster(5, old)
    start = len(net.events)
    names = sorted(net.members)
    for name in names:  # 1. install the new key everywhere (still sending with the old one)
        keyring(net, name).install(new)
        net.run_for(0.5)
    for name in names:  # 2. switch the primary, one member at a time, traffic flowing between
        keyring(net, name).use(new)
        net.run_for(2.0)
    net.run_for(5.0)   # everything sealed with the old key has been delivered by now
    for name in names:  # 3. drop the old key
        keyring(net, name).remove(old)
        net.run_for(0.5)
    net.run_for(30.0)
    assert net.converged()
    assert net.stats.decrypt_errors == 0
    assert all(keyring(net, n).list() == [new] for n in names)
    later = net.events[start:]
    assert not [e for e in later if e.event.kind in (EventKind.SUSPECT, EventKind.FAILED)]
    # a member that still has only the old key cannot get in
    net.add("stranger", keyring=Keyring([old]))
    net.join("stranger", ["node0"])
    net.run_for(10.0)
    assert net.stats.decrypt_errors > 0
    assert all(net.view(n, "stranger") is None for n in names)


def test_removing_the_old_key_too_early_is_seen_as_decrypt_failures() -> None:
    """The simulation notices what the rotation order guards against (not a vacuous check)."""
    old, new = generate_key(), generate_key()
    net = encrypted_cluster(3, old)
    keyring(net, "node0").install(new)
    keyring(net, "node0").use(new)
    keyring(net, "node0").remove(old)  # node1 and node2 never learned the new key
    net.run_for(5.0)
    assert net.stats.decrypt_errors > 0
