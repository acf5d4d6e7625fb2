"""Gossip membership and failure detection: SWIM with Lifeguard, as hashicorp/memberlist.

::

    driver.py  GossipNode (asyncio)          UDP 8301: probes, acks, gossip      TCP 8301: push-pull,
       |  loop.time(), sockets, keyring      fallback ping; every packet sealed/opened by keyring.py
       v
    swim.py    SwimCore (sans-I/O)           tick(now) / receive(addr, bytes, now) / join / leave /
       |                                     set_tags  ->  Ready(packets, streams, events)
       +-- members.py    member table, merge rules (judge_alive / judge_suspect / judge_dead)
       +-- suspicion.py  Lifeguard dynamic suspicion timeout (shrinks with confirmations)
       +-- awareness.py  Lifeguard local health: stretches probe interval/timeout when unhealthy
       +-- broadcast.py  transmit-limited, invalidating broadcast queue; packs under the MTU
       +-- messages.py   frozen message types, strict msgpack codec (GossipCodecError only)
    sim.py     SimNetwork: many cores, loss/delay/partitions, simulated clock (tests, bench)

Invariants:

* The core never reads a clock, touches a socket or uses global randomness; the same inputs
  and seed give the same outputs.
* Incarnations only grow; only a member raises its own (to refute, to change tags, to rejoin).
* Everything from the network is validated before the core acts on it; a bad packet is dropped
  and counted by the driver, it never raises out of a callback.
"""
