"""Authorize what is decoded, whatever the spelling (issue 18 items 1-4, as a property): random
registration bodies, their keys spelled in any case and with underscores as Go's decoder and
ours accept them, sent with a token that may write only ``fz-web`` and its sidecar. Whatever the
agent accepts, it must never write another service's name, proxy destination, ID or check; a
refusal changes nothing; no body gives a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import AgentProcess
from .test_acl import call, req, start_acl_agent, token_with

pytestmark = pytest.mark.integration

ALLOWED = {"fz-web", "fz-web-sidecar-proxy"}


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    a = start_acl_agent(tmp_path_factory.mktemp("aclfuzz"))
    call(a, "PUT", "/v1/agent/service/register",
         {"Name": "fz-db", "ID": "fz-db-id", "Port": 5432, "Check": {"CheckID": "fz-db-chk", "TTL": "60s"}})
    yield a
    a.stop()


@pytest.fixture(scope="module")
def token(agent: AgentProcess) -> str:
    return token_with(agent, "\n".join(f'service "{n}" {{ policy = "write" }}' for n in sorted(ALLOWED)))


def spell(canon: str) -> st.SearchStrategy[str]:
    """``DestinationServiceName`` as a client may send it: any case, snake_case, stray underscores."""
    snake = "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(canon))
    return st.sampled_from([canon, canon.lower(), canon.upper(), snake, snake.upper(), "_".join(canon)])


NAMES = st.sampled_from(["fz-web", "fz-db", "fz-web-sidecar-proxy"])


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {draw(spell("Name")): draw(NAMES), draw(spell("Port")): 8080}
    if draw(st.booleans()):
        body[draw(spell("ID"))] = draw(st.sampled_from(["fz-web", "fz-db-id", "fz-new"]))
    if draw(st.booleans()):
        body[draw(spell("Kind"))] = "connect-proxy"
        body[draw(spell("Proxy"))] = {draw(spell("DestinationServiceName")): draw(NAMES)}
    elif draw(st.booleans()):
        sidecar: dict[str, Any] = {}
        if draw(st.booleans()):
            sidecar[draw(spell("Name"))] = draw(NAMES)
        if draw(st.booleans()):
            sidecar[draw(spell("Proxy"))] = {draw(spell("DestinationServiceName")): draw(NAMES)}
        body[draw(spell("Connect"))] = {draw(spell("SidecarService")): sidecar}
    if draw(st.booleans()):
        body[draw(spell("Check"))] = {draw(spell("CheckID")): draw(st.sampled_from(["fz-db-chk", "fz-own"])),
                                      "TTL": "60s"}
    return body


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies())
def test_whatever_the_spelling_only_what_the_token_may_write_is_written(agent: AgentProcess, token: str,
                                                                         body: dict[str, Any]) -> None:
    status, raw, _ = req(agent, "PUT", "/v1/agent/service/register", body, token)
    assert status in (200, 400, 403), (body, status, raw)
    services = call(agent, "GET", "/v1/agent/services")
    checks = call(agent, "GET", "/v1/agent/checks")
    try:
        assert services["fz-db-id"]["Service"] == "fz-db" and services["fz-db-id"]["Port"] == 5432, body
        assert checks["fz-db-chk"]["ServiceID"] == "fz-db-id", body
        for sid, s in services.items():
            if sid == "fz-db-id":
                continue
            assert s["Service"] in ALLOWED, (body, status, s)
            dest = (s.get("Proxy") or {}).get("DestinationServiceName")
            assert not dest or dest in ALLOWED, (body, status, s)
        if status != 200:
            assert set(services) == {"fz-db-id"}, (body, raw)  # a refusal wrote nothing
    finally:
        for sid in services:
            if sid != "fz-db-id":
                call(agent, "PUT", f"/v1/agent/service/deregister/{sid}")
        for cid, c in checks.items():
            if cid != "fz-db-chk" and not c.get("ServiceID"):
                call(agent, "PUT", f"/v1/agent/check/deregister/{cid}")
