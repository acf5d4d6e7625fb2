"""``lictor troubleshoot proxy``'s checks over admin-API documents (no Envoy needed)."""

from __future__ import annotations

from lictor.cli.troubleshoot import diagnose

CERTS = {"certificates": [{"ca_cert": [{"serial_number": "01", "days_until_expiration": "3000"}],
                           "cert_chain": [{"serial_number": "0a", "days_until_expiration": "2"}]}]}
DUMP = {"configs": [
    {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": [
        {"name": "public_listener:0.0.0.0:21000", "active_state": {}},
        {"name": "api:127.0.0.1:9191", "active_state": {}}]},
    {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters": [
        {"cluster": {"name": "local_app"}}, {"cluster": {"name": "api.default.dc1.internal.td"}}]}]}


def _clusters(healthy: bool) -> dict:  # type: ignore[type-arg]
    hosts = [{"address": {"socket_address": {"address": "10.0.0.1", "port_value": 21000}},
              "health_status": {"eds_health_status": "HEALTHY"}}] if healthy else []
    return {"cluster_statuses": [{"name": "api.default.dc1.internal.td", "host_statuses": hosts}]}


def test_a_healthy_sidecar_passes_every_check() -> None:
    res = diagnose(CERTS, DUMP, _clusters(True), "cluster_manager.cds.update_rejected: 0\n")
    assert all(ok for ok, _ in res), res
    text = "\n".join(s for _, s in res)
    assert "public listener found: public_listener:0.0.0.0:21000" in text
    assert "cluster api.default.dc1.internal.td: 1 healthy endpoint(s) (10.0.0.1:21000)" in text


def test_problems_are_reported() -> None:
    expired = {"certificates": [{"ca_cert": [{"serial_number": "01", "days_until_expiration": "0"}],
                                 "cert_chain": []}]}
    res = diagnose(expired, DUMP, _clusters(False), "cluster_manager.cds.update_rejected: 2\n", upstream="db")
    bad = [s for ok, s in res if not ok]
    assert any("no certificates" in s for s in bad)
    assert any("CA certificate 01 expired" in s for s in bad)
    assert any("no listener for upstream 'db'" in s for s in bad)
    assert any("update_rejected = 2" in s for ok, s in res if ok)  # a note: the last good config serves
    res = diagnose(CERTS, DUMP, _clusters(False), "")
    assert (False, "cluster api.default.dc1.internal.td: no healthy endpoints") in res
