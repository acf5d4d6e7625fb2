"""The sans-I/O ADS stream state: versions, nonces, ACK/NACK, ordering, nothing-changed."""

from __future__ import annotations

from dataclasses import replace

from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from lictor.agent.proxycfg.snapshot import Endpoint
from lictor.agent.xds.common import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from lictor.agent.xds.resources import resources_from_snapshot
from lictor.agent.xds.stream import StreamState
from tests.unit.agent.envoyxds.fixtures import http_web_with_upstream, target, tcp_web_with_upstream

EDS_NAME = target("api").cluster_name


def sotw(type_url: str, nonce: str = "", names: tuple[str, ...] = (), error: str = "") -> discovery_pb2.DiscoveryRequest:
    req = discovery_pb2.DiscoveryRequest(type_url=type_url, response_nonce=nonce, resource_names=list(names))
    if error:
        req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return req


def delta(type_url: str, nonce: str = "", sub: tuple[str, ...] = (), unsub: tuple[str, ...] = (),
          error: str = "", initial: dict[str, str] | None = None) -> discovery_pb2.DeltaDiscoveryRequest:
    req = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, response_nonce=nonce,
                                              resource_names_subscribe=list(sub),
                                              resource_names_unsubscribe=list(unsub),
                                              initial_resource_versions=initial or {})
    if error:
        req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return req


def names(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    out = []
    for a in resp.resources:
        c = cluster_pb2.Cluster()
        if a.Unpack(c):
            out.append(c.name)
    return out


def test_nothing_is_sent_before_the_first_snapshot() -> None:
    st = StreamState(delta=False)
    st.on_request(sotw(CLUSTER))
    assert st.responses() == []
    st.set_resources(resources_from_snapshot(tcp_web_with_upstream()))
    [resp] = st.responses()
    assert resp.type_url == CLUSTER and resp.version_info == "1" and resp.nonce
    assert sorted(names(resp)) == sorted(["local_app", EDS_NAME])


def test_sotw_ack_nack_and_no_push_when_nothing_changed() -> None:
    snap = tcp_web_with_upstream()
    st = StreamState(delta=False)
    st.set_resources(resources_from_snapshot(snap))
    st.on_request(sotw(CLUSTER))
    [cds] = st.responses()
    st.on_request(sotw(CLUSTER, cds.nonce))  # ACK
    assert st.acks == 1 and st.responses() == []
    # the same snapshot again: nothing to send
    st.set_resources(resources_from_snapshot(snap))
    assert st.responses() == []
    # a change of endpoints only: EDS is sent, not CDS
    st.on_request(sotw(ENDPOINT, names=(EDS_NAME,)))
    [eds] = st.responses()
    st.on_request(sotw(ENDPOINT, eds.nonce, names=(EDS_NAME,)))
    fewer = replace(snap, upstreams=(replace(snap.upstreams[0], targets=(replace(
        snap.upstreams[0].targets[0], endpoints=(Endpoint(address="10.0.0.9", port=1),)),)),))
    st.set_resources(resources_from_snapshot(fewer))
    [eds2] = st.responses()
    assert eds2.type_url == ENDPOINT and eds2.version_info == "2"
    # a NACK is recorded with Envoy's message, and the rejected content is not sent again
    nack = st.on_request(sotw(ENDPOINT, eds2.nonce, names=(EDS_NAME,), error="bad endpoint"))
    assert nack is not None and nack.message == "bad endpoint" and st.nacks == [nack]
    assert st.responses() == []


def test_stale_nonce_is_ignored() -> None:
    st = StreamState(delta=False)
    st.set_resources(resources_from_snapshot(tcp_web_with_upstream()))
    st.on_request(sotw(CLUSTER))
    [first] = st.responses()
    st.set_resources(resources_from_snapshot(replace(tcp_web_with_upstream(), local_app_port=9999)))
    [second] = st.responses()
    # an error about the first response arrives after the second was sent: stale, no NACK
    assert st.on_request(sotw(CLUSTER, first.nonce, error="old")) is None and st.nacks == []
    st.on_request(sotw(CLUSTER, second.nonce))
    assert st.acks == 1


def test_responses_follow_type_order_and_endpoints_follow_a_changed_cluster() -> None:
    st = StreamState(delta=False)
    st.set_resources(resources_from_snapshot(http_web_with_upstream()))
    for t, n in ((ROUTE, ("api",)), (LISTENER, ()), (ENDPOINT, (EDS_NAME,)), (SECRET, ("leaf", "roots")),
                 (CLUSTER, ())):
        st.on_request(sotw(t, names=n))
    out = st.responses()
    assert [r.type_url for r in out] == [SECRET, CLUSTER, ENDPOINT, LISTENER, ROUTE]
    for r in out:
        st.on_request(sotw(r.type_url, r.nonce, names=("api",) if r.type_url == ROUTE else
                           (EDS_NAME,) if r.type_url == ENDPOINT else ("leaf", "roots") if r.type_url == SECRET else ()))
    assert st.responses() == []
    # a cluster changes (its connect timeout): Envoy warms it until it gets its endpoints again
    snap = http_web_with_upstream()
    t0 = snap.upstreams[0].targets[0]
    changed = replace(snap, upstreams=(replace(snap.upstreams[0], targets=(replace(t0, connect_timeout=1.0),)),))
    st.set_resources(resources_from_snapshot(changed))
    assert [r.type_url for r in st.responses()] == [CLUSTER, ENDPOINT]


def test_delta_sends_only_changes_and_removals() -> None:
    st = StreamState(delta=True)
    st.set_resources(resources_from_snapshot(tcp_web_with_upstream()))
    st.on_request(delta(CLUSTER))  # wildcard
    [cds] = st.responses()
    assert sorted(r.name for r in cds.resources) == sorted(["local_app", EDS_NAME]) and not cds.removed_resources
    st.on_request(delta(CLUSTER, cds.nonce))
    st.on_request(delta(ENDPOINT, sub=(EDS_NAME,)))
    [eds] = st.responses()
    st.on_request(delta(ENDPOINT, eds.nonce))
    # only local_app changes: only it is sent
    st.set_resources(resources_from_snapshot(replace(tcp_web_with_upstream(), local_app_port=9999)))
    [cds2] = st.responses()
    assert [r.name for r in cds2.resources] == ["local_app"]
    st.on_request(delta(CLUSTER, cds2.nonce))
    # the upstream goes away: its cluster is removed, by name
    st.set_resources(resources_from_snapshot(replace(tcp_web_with_upstream(), local_app_port=9999, upstreams=())))
    out = st.responses()
    assert out[0].type_url == CLUSTER and list(out[0].removed_resources) == [EDS_NAME]


def test_delta_reconnect_with_initial_versions_sends_nothing_new() -> None:
    res = resources_from_snapshot(tcp_web_with_upstream())
    first = StreamState(delta=True)
    first.set_resources(res)
    first.on_request(delta(CLUSTER))
    [cds] = first.responses()
    versions = {r.name: r.version for r in cds.resources}
    again = StreamState(delta=True)  # Envoy reconnects (an agent restart) and says what it has
    again.set_resources(resources_from_snapshot(tcp_web_with_upstream()))
    again.on_request(delta(CLUSTER, initial=versions))
    assert again.responses() == []


def test_delta_nack_is_recorded() -> None:
    st = StreamState(delta=True)
    st.set_resources(resources_from_snapshot(tcp_web_with_upstream()))
    st.on_request(delta(CLUSTER))
    [cds] = st.responses()
    nack = st.on_request(delta(CLUSTER, cds.nonce, error="malformed"))
    assert nack is not None and nack.message == "malformed" and st.acks == 0


def _settle(st: StreamState, out: list, delta_mode: bool) -> None:  # type: ignore[type-arg]
    for r in out:
        if delta_mode:
            st.on_request(delta(r.type_url, r.nonce))
        else:
            names_ = {ENDPOINT: (EDS_NAME,), SECRET: ("leaf", "roots"), ROUTE: ("api",)}.get(r.type_url, ())
            st.on_request(sotw(r.type_url, r.nonce, names=names_))


def test_a_removed_cluster_goes_only_after_the_listener_that_used_it() -> None:
    for delta_mode in (False, True):
        st = StreamState(delta=delta_mode)
        st.set_resources(resources_from_snapshot(tcp_web_with_upstream()))
        if delta_mode:
            for t, n in ((CLUSTER, ()), (ENDPOINT, (EDS_NAME,)), (LISTENER, ())):
                st.on_request(delta(t, sub=n))
        else:
            for t, n in ((CLUSTER, ()), (ENDPOINT, (EDS_NAME,)), (LISTENER, ())):
                st.on_request(sotw(t, names=n))
        _settle(st, st.responses(), delta_mode)
        assert st.responses() == []
        # the upstream goes away: first the listener, and the cluster only once that is ACKed
        st.set_resources(resources_from_snapshot(replace(tcp_web_with_upstream(), upstreams=())))
        first = st.responses()
        assert [r.type_url for r in first] == [LISTENER], (delta_mode, [r.type_url for r in first])
        _settle(st, first, delta_mode)
        cds = st.responses()[0]  # (SotW re-sends the endpoints after a cluster change)
        assert cds.type_url == CLUSTER
        if delta_mode:
            assert list(cds.removed_resources) == [EDS_NAME]
        else:
            assert names(cds) == ["local_app"]
