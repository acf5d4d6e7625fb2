"""Traffic-management fields (issue 12): every bad input is refused with the field named, and the
full set of traffic entries used by the xDS goldens validates."""

from __future__ import annotations

import pytest

from lictor.common.errors import ValidationError
from lictor.server.configentry.entries import DictView, decode_entry
from lictor.server.configentry.validate import validate_entry
from tests.unit.agent.envoyxds.fixtures import TRAFFIC_ENTRIES

HTTP = {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}
TCP_DB = {"Kind": "service-defaults", "Name": "db", "Protocol": "tcp"}


def check(body: dict, *others: dict) -> None:  # type: ignore[type-arg]
    validate_entry(decode_entry(body), DictView([decode_entry(o) for o in others]))


def router(dest: dict, match: dict | None = None) -> dict:  # type: ignore[type-arg]
    return {"Kind": "service-router", "Name": "web",
            "Routes": [{"Match": {"HTTP": match or {"PathPrefix": "/"}}, "Destination": dest}]}


@pytest.mark.parametrize(("body", "others", "message"), [
    (router({"RequestMirrorPolicies": [{"Service": "web", "Percent": 10}]}), [HTTP],
     "Routes[0].Destination.RequestMirrorPolicies[0].Service: a mirror to the route's own destination 'web'"),
    (router({"Service": "api", "RequestMirrorPolicies": [{"Service": "api"}]}), [HTTP],
     "RequestMirrorPolicies[0].Service: a mirror to the route's own destination 'api'"),
    (router({"RequestMirrorPolicies": [{"Service": "shadow", "Percent": 150}]}), [HTTP],
     "Routes[0].Destination.RequestMirrorPolicies[0].Percent: must be greater than 0 and at most 100, got 150"),
    (router({"RequestMirrorPolicies": [{"Percent": 5}]}), [HTTP],
     "RequestMirrorPolicies[0].Service: the service to mirror to is required"),
    (router({"FaultInjection": {"Abort": {"HTTPStatus": 503, "Percent": 120}}}), [HTTP],
     "Routes[0].Destination.FaultInjection.Abort.Percent: must be greater than 0 and at most 100, got 120"),
    (router({"FaultInjection": {"Abort": {"HTTPStatus": 503, "GRPCStatus": 14, "Percent": 1}}}), [HTTP],
     "Routes[0].Destination.FaultInjection.Abort: HTTPStatus, GRPCStatus cannot be combined"),
    (router({"FaultInjection": {"Delay": {"Duration": "1s", "Percent": 5}, "HeaderMatch": [{"Exact": "x"}]}}), [HTTP],
     "Routes[0].Destination.FaultInjection.HeaderMatch[0].Name: header name is required"),
    (router({"RequestTimeout": "-1s"}), [HTTP], "Routes[0].Destination.RequestTimeout: duration must not be negative"),
    (router({"NumRetries": 2, "PerTryTimeout": "-5ms"}), [HTTP],
     "Routes[0].Destination.PerTryTimeout: duration must not be negative"),
    (router({"PerTryTimeout": "1s"}), [HTTP], "Routes[0].Destination.PerTryTimeout: requires a retry policy"),
    (router({"RetryOn": ["sometimes"]}), [HTTP], "Routes[0].Destination.RetryOn[0]: invalid value 'sometimes'"),
    (router({"Service": "db"}), [HTTP, TCP_DB],
     'Routes[0].Destination: discovery chain "web" uses inconsistent protocols: service "db" has protocol "tcp"'),
    ({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 90.5, "ServiceSubset": "v1"}, {"Weight": 9.4}]},
     [HTTP], "Splits: the sum of all split weights must be 100, not 99.9"),
    ({"Kind": "service-resolver", "Name": "web", "Subsets": {"v2": {"Filter": "Service.Meta.version = v2"}}}, [],
     "Subsets.v2.Filter: invalid filter"),
    ({"Kind": "service-splitter", "Name": "web", "Splits": [{"Weight": 100}], "Mirrors": [{"Percent": 5}]}, [HTTP],
     "Mirrors[0].Service: a mirror of 'web' to itself is not allowed"),
    ({"Kind": "service-resolver", "Name": "web", "ConnectTimeout": "-2s"}, [],
     "ConnectTimeout: duration must not be negative"),
    ({"Kind": "service-defaults", "Name": "web", "UpstreamConfig": {"Overrides": [
        {"Name": "api", "RetryBudget": {"BudgetPercent": 120}}]}}, [],
     "UpstreamConfig.Overrides[0].RetryBudget.BudgetPercent: must be between 0 and at most 100, got 120"),
    ({"Kind": "service-defaults", "Name": "web", "UpstreamConfig": {"Defaults": {
        "PassiveHealthCheck": {"MaxEjectionPercent": 101}}}}, [],
     "UpstreamConfig.Defaults.PassiveHealthCheck.MaxEjectionPercent: must be at most 100"),
    ({"Kind": "service-defaults", "Name": "web", "UpstreamConfig": {"Defaults": {
        "PassiveHealthCheck": {"BaseEjectionTime": "-3s"}}}}, [],
     "UpstreamConfig.Defaults.PassiveHealthCheck.BaseEjectionTime: duration must not be negative"),
    ({"Kind": "service-defaults", "Name": "web", "UpstreamConfig": {"Defaults": {"Limits": {"MaxConnectons": 1}}}}, [],
     "UpstreamConfig.Defaults.Limits.MaxConnectons: unknown field"),
    ({"Kind": "service-defaults", "Name": "web", "UpstreamConfig": {"Defaults": {"Limits": {"MaxRetries": -1}}}}, [],
     "UpstreamConfig.Defaults.Limits.MaxRetries"),
    ({"Kind": "proxy-defaults", "Name": "global", "UpstreamConfig": {"Defaults": {
        "RetryBudget": {"BudgetPercent": -1}}}}, [],
     "UpstreamConfig.Defaults.RetryBudget.BudgetPercent: must be between 0 and at most 100, got -1"),
])
def test_bad_traffic_fields_are_refused_naming_the_field(body: dict, others: list, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError) as info:
        check(body, *others)
    assert message in str(info.value)


def test_the_golden_traffic_entries_are_valid() -> None:
    done: list[dict] = []  # type: ignore[type-arg]
    for e in TRAFFIC_ENTRIES:
        validate_entry(decode_entry(e), DictView([decode_entry(d) for d in done]))
        done.append(e)
