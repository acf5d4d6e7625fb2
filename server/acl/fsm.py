"""The ACL command (``MessageType.ACL``): its FSM handler. Pure: every ID, secret and timestamp
is chosen by the endpoint (or the leader) before the command is proposed.

Payload shapes (``{"op": ..., ...}``), rows API-shaped (see state.py):

* ``token_set {token}``, ``token_delete {ids: [AccessorID]}``
* ``policy_set {policy}``, ``policy_delete {id}``
* ``role_set {role}``, ``role_delete {id}``
* ``auth_method_set {method}``, ``auth_method_delete {name}`` (also deletes its binding rules and
  the tokens it issued)
* ``binding_rule_set {rule}``, ``binding_rule_delete {id}``
* ``bootstrap {token}``: refused once ACLs were bootstrapped (``acl.bootstrap`` index row)
* ``init {policies: [...], tokens: [...], bootstrapped: bool}``: the leader's initialisation;
  creates only what is missing (it runs on every new leader)

Refusals raise (ValidationError / PermissionDeniedError) and change nothing.
"""

from __future__ import annotations

from typing import Any

from lictor.common.commands import MessageType
from lictor.common.errors import NotFound, PermissionDeniedError, ValidationError
from lictor.server.acl.authorizer import ANONYMOUS_ACCESSOR_ID, GLOBAL_MANAGEMENT_ID
from lictor.server.acl.state import BOOTSTRAP_INDEX_KEY
from lictor.server.fsm import register_handler
from lictor.server.state.store import WriteTxn

__all__ = ["apply_acl"]


def _stamp(tx: WriteTxn, old: dict[str, Any] | None, row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "CreateIndex": old["CreateIndex"] if old else tx.index, "ModifyIndex": tx.index}


def _same(old: dict[str, Any] | None, row: dict[str, Any]) -> bool:
    if old is None:
        return False
    strip = ("CreateIndex", "ModifyIndex")
    return {k: v for k, v in old.items() if k not in strip} == {k: v for k, v in row.items() if k not in strip}


def _token_set_txn(tx: WriteTxn, tok: dict[str, Any]) -> dict[str, Any]:
    table = tx.store.ext["acl_tokens"]
    acc, secret = tok.get("AccessorID", ""), tok.get("SecretID", "")
    if not acc or not secret:
        raise ValidationError("token needs an AccessorID and a SecretID")
    old = table.get(acc)
    if old is not None and old["SecretID"] != secret:
        raise ValidationError("Changing a token's SecretID is not permitted")
    if old is None:
        for other in table.values():
            if other["SecretID"] == secret or other["AccessorID"] == secret:
                raise ValidationError("Invalid Token: SecretID is already in use")
    if _same(old, tok):
        return old  # type: ignore[return-value]
    row = _stamp(tx, old, tok)
    tx.put(table, acc, row)
    tx.bump("acl_tokens")
    return row


def _named_set_txn(tx: WriteTxn, table_name: str, row: dict[str, Any], what: str) -> dict[str, Any]:
    table = tx.store.ext[table_name]
    rid = row.get("ID", "")
    if not rid or not row.get("Name"):
        raise ValidationError(f"{what} needs an ID and a Name")
    for other in table.values():
        if other["Name"] == row["Name"] and other["ID"] != rid:
            raise ValidationError(f"Invalid {what}: A {what} with name {row['Name']!r} already exists")
    old = table.get(rid)
    if _same(old, row):
        return old  # type: ignore[return-value]
    new = _stamp(tx, old, row)
    tx.put(table, rid, new)
    tx.bump(table_name)
    return new


def _delete_txn(tx: WriteTxn, table_name: str, key: str) -> bool:
    if tx.delete(tx.store.ext[table_name], key) is None:
        return False
    tx.bump(table_name)
    return True


def apply_acl(tx: WriteTxn, p: dict[str, Any], now: float) -> Any:
    op = p["op"]
    ext = tx.store.ext
    if op == "token_set":
        if p.get("must_exist") and p["token"]["AccessorID"] not in ext["acl_tokens"]:
            raise NotFound(f"Cannot find token {p['token']['AccessorID']!r}")
        return _token_set_txn(tx, p["token"])
    if op == "token_delete":
        return sum(_delete_txn(tx, "acl_tokens", acc) for acc in p["ids"] if acc != ANONYMOUS_ACCESSOR_ID)
    if op == "policy_set":
        pol = p["policy"]
        if pol["ID"] == GLOBAL_MANAGEMENT_ID and GLOBAL_MANAGEMENT_ID in ext["acl_policies"]:
            cur = ext["acl_policies"][GLOBAL_MANAGEMENT_ID]
            if pol.get("Rules") != cur.get("Rules") or pol.get("Name") != cur.get("Name"):
                raise ValidationError("Changing the Rules or Name of the builtin global-management policy is "
                                      "not permitted")
        return _named_set_txn(tx, "acl_policies", pol, "Policy")
    if op == "policy_delete":
        if p["id"] == GLOBAL_MANAGEMENT_ID:
            raise ValidationError("Delete operation not permitted on the builtin global-management policy")
        return _delete_txn(tx, "acl_policies", p["id"])
    if op == "role_set":
        return _named_set_txn(tx, "acl_roles", p["role"], "Role")
    if op == "role_delete":
        return _delete_txn(tx, "acl_roles", p["id"])
    if op == "auth_method_set":
        m = p["method"]
        old = ext["acl_auth_methods"].get(m["Name"])
        if _same(old, m):
            return old
        row = _stamp(tx, old, m)
        tx.put(ext["acl_auth_methods"], m["Name"], row)
        tx.bump("acl_auth_methods")
        return row
    if op == "auth_method_delete":
        name = p["name"]
        if not _delete_txn(tx, "acl_auth_methods", name):
            return False
        for rid in [r["ID"] for r in ext["acl_binding_rules"].values() if r["AuthMethod"] == name]:
            _delete_txn(tx, "acl_binding_rules", rid)
        for acc in [t["AccessorID"] for t in ext["acl_tokens"].values() if t.get("AuthMethod") == name]:
            _delete_txn(tx, "acl_tokens", acc)
        return True
    if op == "binding_rule_set":
        r = p["rule"]
        if r["AuthMethod"] not in ext["acl_auth_methods"]:
            raise ValidationError(f"Invalid Binding Rule: unknown auth method {r['AuthMethod']!r}")
        old = ext["acl_binding_rules"].get(r["ID"])
        if _same(old, r):
            return old
        row = _stamp(tx, old, r)
        tx.put(ext["acl_binding_rules"], r["ID"], row)
        tx.bump("acl_binding_rules")
        return row
    if op == "binding_rule_delete":
        return _delete_txn(tx, "acl_binding_rules", p["id"])
    if op == "bootstrap":
        done = tx.store.indexes.get(BOOTSTRAP_INDEX_KEY)
        if done:
            raise PermissionDeniedError(f"ACL bootstrap no longer allowed (reset index: {done})")
        for pol in p.get("policies", []):
            if pol["ID"] not in ext["acl_policies"]:
                _named_set_txn(tx, "acl_policies", pol, "Policy")
        row = _token_set_txn(tx, p["token"])
        tx.bump(BOOTSTRAP_INDEX_KEY)
        return row
    if op == "init":
        created = 0
        for pol in p.get("policies", []):
            if pol["ID"] not in ext["acl_policies"]:
                _named_set_txn(tx, "acl_policies", pol, "Policy")
                created += 1
        for tok in p.get("tokens", []):
            if tok["AccessorID"] in ext["acl_tokens"]:
                continue
            if any(t["SecretID"] == tok["SecretID"] for t in ext["acl_tokens"].values()):
                continue  # the initial management secret already exists under another accessor
            _token_set_txn(tx, tok)
            created += 1
        if p.get("bootstrapped") and not tx.store.indexes.get(BOOTSTRAP_INDEX_KEY):
            tx.bump(BOOTSTRAP_INDEX_KEY)
        return created
    raise ValidationError(f"unknown ACL operation {op!r}")


register_handler(MessageType.ACL, apply_acl)
