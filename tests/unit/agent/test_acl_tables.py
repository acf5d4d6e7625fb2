"""One rule table per decision (issue 16, defect 9): a route the server decides is listed with
the RPC endpoints that decide it, those endpoints have a rule in the server's table, and the
route's handler really asks them; the agent's own table keeps only agent-local routes."""

from __future__ import annotations

import inspect

from lictor.agent.http.acl_enforce import FILTERS, SERVER_DECIDED, SPECIAL
from lictor.agent.http.app import _load_routes
from lictor.agent.http.base import ROUTES
from lictor.server.acl.rpc_rules import RPC_RULES


def _routes() -> dict[tuple[str, str], object]:
    _load_routes()
    return {(r.method, r.path): r.handler for r in ROUTES}


def test_server_decided_routes_exist_and_ask_the_rpcs_whose_rules_decide_them() -> None:
    routes = _routes()
    for key, rpcs in SERVER_DECIDED.items():
        assert key in routes, f"{key} is not a route"
        module_src = inspect.getsource(inspect.getmodule(routes[key]))  # type: ignore[arg-type]
        for name in rpcs:
            assert name in RPC_RULES, f"{key}: {name} has no rule in server/acl/rpc_rules.py"
            assert f'"{name}"' in module_src, f"{key}: its handler's module never calls {name}"


def test_the_agent_table_holds_no_server_decided_route() -> None:
    assert not set(SERVER_DECIDED) & set(SPECIAL)
    assert not set(SERVER_DECIDED) & set(FILTERS)
    # what the agent still decides is answered from its own state
    for method, path in SPECIAL:
        assert path.startswith("/v1/agent/"), (method, path)


def test_server_list_filters_fail_closed_on_rows_they_do_not_understand() -> None:
    from lictor.server.acl.authorizer import build_authorizer
    from lictor.server.acl.rpc_rules import filter_rpc_result
    from lictor.server.acl.rules import parse_rules

    z = build_authorizer([parse_rules('node_prefix "" { policy = "read" }\nservice_prefix "" { policy = "read" }\n'
                                      'session_prefix "" { policy = "read" }')], default="deny")
    odd: list[object] = ["not-a-row", 7, None]
    for name in ("Health.NodeChecks", "Health.ServiceNodes", "Catalog.ListNodes", "Session.List",
                 "Coordinate.ListNodes", "Intention.List", "ConfigEntry.List"):
        out = filter_rpc_result(z, name, {"result": list(odd)})
        assert out["result"] == [] and out["results_filtered_by_acls"], name
