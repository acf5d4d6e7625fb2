"""The leader's ACL duties, run each round of the leader loop once leadership is established:

* initialise: the builtin ``global-management`` policy, the anonymous token, and the
  ``initial_management`` token from the config (only what is missing; IDs chosen here, so the
  FSM stays pure);
* reap expired tokens (one ``token_delete`` command listing them).

Returns a sentence saying what it did ("" when nothing), as leader routines do.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from lictor.common.commands import MessageType
from lictor.server.acl.authorizer import (ANONYMOUS_ACCESSOR_ID, ANONYMOUS_SECRET_ID, GLOBAL_MANAGEMENT_ID,
                                          GLOBAL_MANAGEMENT_NAME, GLOBAL_MANAGEMENT_RULES)
from lictor.server.acl.config import acl_config
from lictor.server.acl.state import expiry_of, find_token_by_secret, format_time

__all__ = ["acl_leader_duties", "global_management_policy", "new_token_row"]


def global_management_policy() -> dict[str, Any]:
    return {"ID": GLOBAL_MANAGEMENT_ID, "Name": GLOBAL_MANAGEMENT_NAME,
            "Description": "Builtin Policy that grants unlimited access", "Rules": GLOBAL_MANAGEMENT_RULES.strip(),
            "Datacenters": []}


def new_token_row(*, accessor: str, secret: str, description: str, now: float, **links: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"AccessorID": accessor, "SecretID": secret, "Description": description,
                           "Policies": [], "Roles": [], "ServiceIdentities": [], "NodeIdentities": [],
                           "TemplatedPolicies": [], "Local": False, "AuthMethod": "", "ExpirationTime": "",
                           "CreateTime": format_time(now), "Hash": ""}
    row.update(links)
    return row


async def acl_leader_duties(server: Any) -> str:
    cfg = acl_config(server)
    if cfg is None:
        return ""
    store, now = server.store, time.time()
    policies, tokens = [], []
    if GLOBAL_MANAGEMENT_ID not in store.ext["acl_policies"]:
        policies.append(global_management_policy())
    if ANONYMOUS_ACCESSOR_ID not in store.ext["acl_tokens"]:
        tokens.append(new_token_row(accessor=ANONYMOUS_ACCESSOR_ID, secret=ANONYMOUS_SECRET_ID,
                                    description="Anonymous Token", now=now))
    initial = cfg.initial_management
    if initial and find_token_by_secret(store, initial) is None:
        tokens.append(new_token_row(accessor=str(uuid.uuid4()), secret=initial, description="Initial Management Token",
                                    now=now, Policies=[{"ID": GLOBAL_MANAGEMENT_ID, "Name": GLOBAL_MANAGEMENT_NAME}]))
    said = []
    if policies or tokens:
        await server.apply(MessageType.ACL, {"op": "init", "policies": policies, "tokens": tokens,
                                             "bootstrapped": bool(initial)})
        said.append(f"initialised ACLs: {len(policies)} policies, {len(tokens)} tokens")
    expired = [acc for acc, t in store.ext["acl_tokens"].items()
               if (e := expiry_of(t)) is not None and e <= now]
    if expired:
        await server.apply(MessageType.ACL, {"op": "token_delete", "ids": expired})
        said.append(f"reaped {len(expired)} expired tokens")
    return "; ".join(said)
