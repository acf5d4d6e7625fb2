"""/v1/acl/* and /v1/agent/token/:type (Consul's shapes). Enforcement is in the ACL endpoints on
the server (they need the caller's identity for redaction and token/self), so most routes here
declare the permission for documentation and the audit log and let ``ACL.*`` decide."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from lictor.agent.http.base import ACL, QueryOptions, blocking_args, decode_json_body, json_response, route
from lictor.common.errors import NotFound, ValidationError
from lictor.server.acl.authorizer import TEMPLATED_POLICIES, templated_policy_rules

if TYPE_CHECKING:
    from lictor.agent.agent import Agent

__all__: list[str] = []


async def _call(agent: Agent, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return await agent.rpc(name, args)


def _opts(req: web.Request, agent: Agent) -> QueryOptions:
    return QueryOptions.parse(req, local_dc=agent.datacenter)


# The fields of Consul's ACL request bodies, for matching JSON keys case-insensitively as Go's
# decoder does ({"name": ..., "rules": ...} is a policy's Name and Rules). ``None`` marks a value
# taken as it is (a string, or a free-form map such as an auth method's Config); a one-item list
# marks a list of that shape. Unknown keys are passed on unchanged.
_LINK: dict[str, Any] = {"ID": None, "Name": None}
_IDENTITIES: dict[str, Any] = {
    "ServiceIdentities": [{"ServiceName": None, "Datacenters": None}],
    "NodeIdentities": [{"NodeName": None, "Datacenter": None}],
    "TemplatedPolicies": [{"TemplateName": None, "TemplateVariables": {"name": None}, "Datacenters": None}],
}
BODY_FIELDS: dict[str, dict[str, Any]] = {
    "token": {"AccessorID": None, "SecretID": None, "Description": None, "Policies": [_LINK], "Roles": [_LINK],
              **_IDENTITIES, "Local": None, "ExpirationTime": None, "ExpirationTTL": None, "AuthMethod": None,
              "Namespace": None, "Partition": None},
    "policy": {"ID": None, "Name": None, "Description": None, "Rules": None, "Datacenters": None,
               "Namespace": None, "Partition": None},
    "role": {"ID": None, "Name": None, "Description": None, "Policies": [_LINK], **_IDENTITIES,
             "Namespace": None, "Partition": None},
    "auth-method": {"Name": None, "Type": None, "DisplayName": None, "Description": None, "MaxTokenTTL": None,
                    "TokenLocality": None, "Config": None, "NamespaceRules": None, "Namespace": None,
                    "Partition": None},
    "binding-rule": {"ID": None, "Description": None, "AuthMethod": None, "Selector": None, "BindType": None,
                     "BindName": None, "BindVars": {"Name": None}, "Namespace": None, "Partition": None},
    "login": {"AuthMethod": None, "BearerToken": None, "Meta": None},
    "bootstrap": {"BootstrapSecret": None},
    "clone": {"Description": None},
    "agent-token": {"Token": None},
    "variables": {"name": None},
}


def canonical_keys(value: Any, shape: Any) -> Any:
    """``value`` with the keys of known fields spelled as ``shape`` spells them (an exact match
    wins over a case-insensitive one, as in Go's encoding/json)."""
    if isinstance(shape, list) and isinstance(value, list):
        return [canonical_keys(v, shape[0]) for v in value]
    if not isinstance(shape, dict) or not isinstance(value, dict):
        return value
    by_lower = {k.lower(): k for k in shape}
    out: dict[str, Any] = {}
    exact: set[str] = set()
    for key, v in value.items():
        canon = key if key in shape else by_lower.get(str(key).lower())
        if canon is None:
            out[key] = v
            continue
        if canon in exact:
            continue  # an exact spelling already set it
        if key == canon:
            exact.add(canon)
        out[canon] = canonical_keys(v, shape[canon])
    return out


async def _body(req: web.Request, required: bool = True, *, kind: str) -> dict[str, Any]:
    b = await decode_json_body(req, required=required)
    if b is None:
        return {}
    if not isinstance(b, dict):
        raise ValidationError("Request decode failed: expected a JSON object")
    return canonical_keys(b, BODY_FIELDS[kind])  # type: ignore[no-any-return]


# ----- bootstrap, login ----------------------------------------------------------------------------------

@route("PUT", "/v1/acl/bootstrap", acl=ACL("none", "write"))
async def bootstrap(req: web.Request, agent: Agent) -> web.StreamResponse:
    body = await _body(req, required=False, kind="bootstrap")
    out = await _call(agent, "ACL.Bootstrap", {"bootstrap_secret": body.get("BootstrapSecret") or ""})
    return json_response(req, out["result"])


@route("POST", "/v1/acl/login", acl=ACL("none", "write"))
async def login(req: web.Request, agent: Agent) -> web.StreamResponse:
    body = await _body(req, kind="login")
    out = await _call(agent, "ACL.Login", {"auth_method": body.get("AuthMethod") or "",
                                           "bearer_token": body.get("BearerToken") or "",
                                           "meta": body.get("Meta") or {}})
    return json_response(req, out["result"])


@route("POST", "/v1/acl/logout", acl=ACL("none", "write"))
async def logout(req: web.Request, agent: Agent) -> web.StreamResponse:
    await _call(agent, "ACL.Logout", {})
    return json_response(req, True)


# ----- tokens -------------------------------------------------------------------------------------------------

@route("PUT", "/v1/acl/token", acl=ACL("acl", "write"))
async def token_create(req: web.Request, agent: Agent) -> web.StreamResponse:
    out = await _call(agent, "ACL.TokenSet", {"body": await _body(req, kind="token"), "create": True})
    return json_response(req, out["result"])


@route("GET", "/v1/acl/token/self", acl=ACL("none", "read"))
async def token_self(req: web.Request, agent: Agent) -> web.StreamResponse:
    out = await _call(agent, "ACL.TokenSelf", {})
    return json_response(req, out["result"], meta=out)


@route("GET", "/v1/acl/token/{id}", acl=ACL("acl", "read"))
async def token_read(req: web.Request, agent: Agent) -> web.StreamResponse:
    out = await _call(agent, "ACL.TokenRead", blocking_args(_opts(req, agent), accessor_id=req.match_info["id"]))
    return json_response(req, out["result"], meta=out)


@route("PUT", "/v1/acl/token/{id}", acl=ACL("acl", "write"))
async def token_update(req: web.Request, agent: Agent) -> web.StreamResponse:
    body = await _body(req, kind="token")
    acc = req.match_info["id"]
    if body.get("AccessorID") and body["AccessorID"] != acc:
        raise ValidationError("Token Accessor ID in URL and payload do not match")
    out = await _call(agent, "ACL.TokenSet", {"body": {**body, "AccessorID": acc}})
    return json_response(req, out["result"])


@route("DELETE", "/v1/acl/token/{id}", acl=ACL("acl", "write"))
async def token_delete(req: web.Request, agent: Agent) -> web.StreamResponse:
    await _call(agent, "ACL.TokenDelete", {"accessor_id": req.match_info["id"]})
    return json_response(req, True)


@route("PUT", "/v1/acl/token/{id}/clone", acl=ACL("acl", "write"))
async def token_clone(req: web.Request, agent: Agent) -> web.StreamResponse:
    body = await _body(req, required=False, kind="clone")
    out = await _call(agent, "ACL.TokenClone", {"accessor_id": req.match_info["id"],
                                                "description": body.get("Description")})
    return json_response(req, out["result"])


@route("GET", "/v1/acl/tokens", acl=ACL("acl", "read"))
async def token_list(req: web.Request, agent: Agent) -> web.StreamResponse:
    q = req.query
    out = await _call(agent, "ACL.TokenList", blocking_args(
        _opts(req, agent), policy=q.get("policy", ""), role=q.get("role", ""), authmethod=q.get("authmethod", ""),
        servicename=q.get("servicename", "")))
    return json_response(req, out["result"], meta=out)


# ----- policies and roles -------------------------------------------------------------------------------------

def _crud(kind: str, plural: str, rpc: str, id_key: str = "id") -> None:
    base = f"/v1/acl/{kind}"

    @route("PUT", base, acl=ACL("acl", "write"))
    async def create(req: web.Request, agent: Agent) -> web.StreamResponse:
        body = await _body(req, kind=kind)
        out = await _call(agent, f"ACL.{rpc}Set", {"body": body, "create": True})
        return json_response(req, out["result"])

    @route("GET", f"/v1/acl/{plural}", acl=ACL("acl", "read"))
    async def lst(req: web.Request, agent: Agent) -> web.StreamResponse:
        extra = {k: req.query[k] for k in ("policy", "authmethod") if k in req.query}
        out = await _call(agent, f"ACL.{rpc}List", blocking_args(_opts(req, agent), **extra))
        return json_response(req, out["result"], meta=out)

    if kind in ("policy", "role"):
        @route("GET", f"{base}/name/{{name}}", acl=ACL("acl", "read"))
        async def by_name(req: web.Request, agent: Agent) -> web.StreamResponse:
            out = await _call(agent, f"ACL.{rpc}Read", blocking_args(_opts(req, agent), name=req.match_info["name"]))
            return json_response(req, out["result"], meta=out)

    @route("GET", f"{base}/{{{id_key}}}", acl=ACL("acl", "read"))
    async def read(req: web.Request, agent: Agent) -> web.StreamResponse:
        out = await _call(agent, f"ACL.{rpc}Read", blocking_args(_opts(req, agent), **{id_key: req.match_info[id_key]}))
        return json_response(req, out["result"], meta=out)

    @route("PUT", f"{base}/{{{id_key}}}", acl=ACL("acl", "write"))
    async def update(req: web.Request, agent: Agent) -> web.StreamResponse:
        body = await _body(req, kind=kind)
        key = "Name" if id_key == "name" else "ID"
        if body.get(key) and body[key] != req.match_info[id_key]:
            raise ValidationError(f"{kind} {key} in URL and payload do not match")
        body[key] = req.match_info[id_key]
        out = await _call(agent, f"ACL.{rpc}Set", {"body": body, "update": True})
        return json_response(req, out["result"])

    @route("DELETE", f"{base}/{{{id_key}}}", acl=ACL("acl", "write"))
    async def delete(req: web.Request, agent: Agent) -> web.StreamResponse:
        await _call(agent, f"ACL.{rpc}Delete", {id_key: req.match_info[id_key]})
        return json_response(req, True)


_crud("policy", "policies", "Policy")
_crud("role", "roles", "Role")
_crud("auth-method", "auth-methods", "AuthMethod", id_key="name")
_crud("binding-rule", "binding-rules", "BindingRule")


# ----- templated policies (static) ------------------------------------------------------------------------------

def _templated_api(name: str) -> dict[str, Any]:
    desc, variables, _ = TEMPLATED_POLICIES[name]
    schema = ('{"type":"object","properties":{"name":{"type":"string","$ref":"#/definitions/min-length-one"}},'
              '"required":["name"]}') if "name" in variables else ""
    template = TEMPLATED_POLICIES[name][2].replace("{name}", "{{.Name}}").replace("{{ ", "{ ").replace(" }}", " }")
    return {"TemplateName": name, "Schema": schema, "Template": template, "Description": desc}


@route("GET", "/v1/acl/templated-policies", acl=ACL("acl", "read"))
async def templated_list(req: web.Request, agent: Agent) -> web.StreamResponse:
    return json_response(req, {n: _templated_api(n) for n in sorted(TEMPLATED_POLICIES)})


@route("GET", "/v1/acl/templated-policy/name/{name:.+}", acl=ACL("acl", "read"))
async def templated_read(req: web.Request, agent: Agent) -> web.StreamResponse:
    name = req.match_info["name"]
    if name not in TEMPLATED_POLICIES:
        raise NotFound(f"templated policy {name!r} not found")
    return json_response(req, _templated_api(name))


@route("POST", "/v1/acl/templated-policy/preview/{name:.+}", acl=ACL("acl", "read"))
async def templated_preview(req: web.Request, agent: Agent) -> web.StreamResponse:
    name = req.match_info["name"]
    if name not in TEMPLATED_POLICIES:
        raise NotFound(f"templated policy {name!r} not found")
    body = await _body(req, required=False, kind="variables")
    variables = {k.lower(): v for k, v in body.items()}
    rules = templated_policy_rules(name, variables)
    return json_response(req, {"ID": "", "Name": f"synthetic-policy-{name.replace('/', '-')}",
                               "Description": "synthetic policy generated from templated policy: " + name,
                               "Rules": rules})


# ----- agent tokens ----------------------------------------------------------------------------------------------

@route("PUT", "/v1/agent/token/{type}", acl=ACL("acl", "write"))
async def agent_token(req: web.Request, agent: Agent) -> web.StreamResponse:
    body = await _body(req, kind="agent-token")
    tok = body.get("Token")
    if not isinstance(tok, str):
        raise ValidationError("Request decode failed: Token must be a string")
    if not agent.acl.enabled:
        raise ValidationError("ACL support disabled", status=401)
    try:
        agent.acl.set_token(req.match_info["type"], tok)
    except ValidationError as exc:
        raise NotFound(str(exc)) from None
    return web.Response(status=200)
