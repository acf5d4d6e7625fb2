"""The agent's leaf-certificate manager against a real in-process CA server, with a manual clock
and a seeded RNG: local keys, renewal in the 60-90% window, re-signing after a root rotation,
backoff on rate limits, blocking reads."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lictor.agent.leafcert import LeafCertManager, _ts, renew_delay
from lictor.common.clock import ManualClock
from lictor.common.errors import ValidationError
from lictor.server import endpoints
from lictor.server.connect import ca, leader
from lictor.server.server import Server, ServerConfig
from tests.unit.server.connect.conftest import certs, verify


class Harness:
    """A dev server, an RPC function that records calls, and a manager on a manual clock."""

    def __init__(self, *, jitter: float = 2.0, seed: int = 7) -> None:
        self.server = Server(ServerConfig(datacenter="dc1", node_name="s1", rpc_address="127.0.0.1:8300"))
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_next: list[Exception] = []
        self.clock = ManualClock()
        self.t0 = time.time()
        self.mgr = LeafCertManager(rpc=self.rpc, datacenter="dc1", clock=self.clock,
                                   wall=lambda: self.t0 + self.clock.monotonic(), rng=random.Random(seed),
                                   root_change_jitter=jitter)

    async def rpc(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((name, args))
        if name == "ConnectCA.Sign" and self.fail_next:
            raise self.fail_next.pop(0)
        return await endpoints.call(self.server, name, args)

    def signs(self) -> list[dict[str, Any]]:
        return [a for n, a in self.calls if n == "ConnectCA.Sign"]

    async def start(self) -> Harness:
        await leader.ca_initialize(self.server)
        await endpoints.call(self.server, "ConnectCA.ApplyConfiguration", {"config": {"Config": {"CSRMaxPerSecond": 0}}})
        return self


@pytest.fixture
async def h(monkeypatch: pytest.MonkeyPatch) -> Any:
    harness = await Harness().start()
    # the leader signs on the same (manual) wall clock as the agent
    from lictor.server.endpoints import connect_ca

    class _Time:
        @staticmethod
        def time() -> float:
            return harness.t0 + harness.clock.monotonic()
    monkeypatch.setattr(connect_ca, "time", _Time)
    yield harness
    await harness.mgr.close()


async def test_first_get_signs_with_a_local_key_and_sends_only_the_csr(h: Harness) -> None:
    idx, leaf = await h.mgr.get("web", token="tok")
    (args,) = h.signs()
    assert set(args) == {"csr", "service", "token"} and args["service"] == "web" and args["token"] == "tok"
    assert "PRIVATE KEY" not in repr(args)
    cert = certs(leaf["CertPEM"])[0]
    key = ca.load_private_key(leaf["PrivateKeyPEM"])
    assert cert.public_key() == key.public_key() and ca.key_spec(key) == ("ec", 256)
    roots = (await endpoints.call(h.server, "ConnectCA.Roots", {}))["result"]
    assert leaf["ServiceURI"] == ca.spiffe_service_uri(roots["TrustDomain"], "dc1", "web")
    assert leaf["Service"] == "web" and idx == leaf["ModifyIndex"] == leaf["CreateIndex"] >= 1
    verify(leaf["CertPEM"], [r["RootCert"] for r in roots["Roots"]])
    # cached: a second get does not sign again
    idx2, leaf2 = await h.mgr.get("web")
    assert (idx2, leaf2) == (idx, leaf) and len(h.signs()) == 1


async def test_renews_at_a_random_point_between_60_and_90_percent_of_the_lifetime(h: Harness) -> None:
    idx, leaf = await h.mgr.get("web")
    after, before = _ts(leaf["ValidAfter"]), _ts(leaf["ValidBefore"])
    life = before - after
    # the renewal point the seeded rng will draw: the same draw on a copy of its state
    at = after + life * random.Random(7).uniform(0.6, 0.9)  # first draw of the manager's rng
    now = h.t0
    await h.clock.advance(max(0.0, after + life * 0.6 - now) - 5)
    assert len(h.signs()) == 1
    waiter = asyncio.ensure_future(h.mgr.get("web", min_index=idx, wait=30))
    await h.clock.advance(max(0.0, at - (h.t0 + h.clock.monotonic())) + 1)
    idx2, leaf2 = await asyncio.wait_for(waiter, 5)
    assert len(h.signs()) == 2 and idx2 > idx and leaf2["SerialNumber"] != leaf["SerialNumber"]
    assert leaf2["PrivateKeyPEM"] != leaf["PrivateKeyPEM"]  # a fresh key for every certificate
    assert after + life * 0.6 - 1 <= h.t0 + h.clock.monotonic() <= after + life * 0.9 + 2


@given(after=st.floats(0, 1e9), life=st.floats(1, 1e8), now_frac=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_renew_delay_always_lands_in_the_60_to_90_percent_window(after: float, life: float, now_frac: float,
                                                                 seed: int) -> None:
    now = after + life * now_frac * 0.5
    d = renew_delay(after, after + life, now, random.Random(seed))
    assert d >= 0
    frac = (now + d - after) / life
    assert 0.6 - 1e-9 <= frac <= 0.9 + 1e-9


async def test_root_rotation_re_signs_after_jitter_and_new_leaf_chains_to_new_root(h: Harness) -> None:
    idx, leaf = await h.mgr.get("web")
    old_root = h.mgr.active_root_id
    waiter = asyncio.ensure_future(h.mgr.get("web", min_index=idx, wait=30))
    new_root = await leader.rotate(h.server)
    for _ in range(50):  # the roots watch is a blocking RPC on the store: it wakes at once
        await asyncio.sleep(0)
        if h.mgr.active_root_id == new_root:
            break
    assert h.mgr.active_root_id == new_root != old_root
    assert len(h.signs()) == 1  # waiting out the jitter first
    await h.clock.advance(h.mgr.root_change_jitter + 0.1)
    idx2, leaf2 = await asyncio.wait_for(waiter, 5)
    assert idx2 > idx and len(h.signs()) == 2
    roots = (await endpoints.call(h.server, "ConnectCA.Roots", {}))["result"]
    new_pem = next(r["RootCert"] for r in roots["Roots"] if r["ID"] == new_root)
    old_pem = next(r["RootCert"] for r in roots["Roots"] if r["ID"] == old_root)
    assert verify(leaf2["CertPEM"], [new_pem])[-1] == ca.load_cert(new_pem)
    verify(leaf2["CertPEM"], [old_pem])  # through the cross-signed intermediate
    verify(leaf["CertPEM"], [r["RootCert"] for r in roots["Roots"]])  # the old leaf too
    # no further re-signing once the leaf matches the active root
    await h.clock.advance(h.mgr.root_change_jitter * 3)
    assert len(h.signs()) == 2


async def test_rate_limited_signing_is_retried_with_growing_backoff(h: Harness) -> None:
    h.fail_next = [ValidationError("Rate limit reached, try again later") for _ in range(3)]
    task = asyncio.ensure_future(h.mgr.get("web"))
    await h.clock.settle()
    assert len(h.signs()) == 1 and not task.done()
    await h.clock.advance(0.1)  # first backoff: 0.05-0.1 s
    assert len(h.signs()) == 2
    await h.clock.advance(0.1)  # second: 0.1-0.2 s, may not be due yet
    await h.clock.advance(0.5)
    assert len(h.signs()) >= 3
    await h.clock.advance(1.0)
    idx, leaf = await asyncio.wait_for(task, 5)
    assert len(h.signs()) == 4 and leaf["Service"] == "web"


async def test_first_fetch_reports_rate_limit_as_429_when_it_never_succeeds(h: Harness,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import lictor.agent.leafcert as lc

    monkeypatch.setattr(lc, "FIRST_FETCH_TIMEOUT", 0.05)
    h.fail_next = [ValidationError("Rate limit reached, try again later") for _ in range(100)]
    with pytest.raises(ValidationError) as ei:
        await h.mgr.get("web")
    assert ei.value.status == 429


async def test_blocking_get_times_out_with_the_same_index(h: Harness) -> None:
    idx, leaf = await h.mgr.get("web")
    t = time.monotonic()
    idx2, leaf2 = await h.mgr.get("web", min_index=idx, wait=0.05)
    assert (idx2, leaf2) == (idx, leaf) and time.monotonic() - t >= 0.04


async def test_agent_roots_view_blocks_until_rotation(h: Harness) -> None:
    idx, roots = await h.mgr.get_roots()
    assert roots["ActiveRootID"] and len(roots["Roots"]) == 1
    waiter = asyncio.ensure_future(h.mgr.get_roots(min_index=idx, wait=10))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await leader.rotate(h.server)
    idx2, roots2 = await asyncio.wait_for(waiter, 2)
    assert idx2 > idx and len(roots2["Roots"]) == 2


async def test_unused_leaves_are_dropped_after_idle_ttl() -> None:
    h = await Harness().start()
    h.mgr.idle_ttl = 3600.0
    await h.mgr.get("web")
    await h.clock.advance(72 * 3600)
    assert h.mgr.cached("web") is None
    await h.mgr.close()
