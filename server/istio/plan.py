"""PURE: what an Istio apply or delete changes, computed from the stored resources and entries.

``plan(resources, entries, apply=..., delete=...)`` takes the ``istio_resources`` table, a view of
the config entries, and the resources to apply / keys to delete; it returns the resource rows to
write and remove and the config entries to write and remove, or raises ValidationError naming the
document and field. The endpoint runs it for ``--dry-run`` and before proposing; the FSM runs it
again inside the write transaction, so the result is computed against the state it applies to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lictor.common.errors import ValidationError
from lictor.server.configentry.entries import (ALL_KINDS, SCHEMAS, ListOf, MapOf, Obj, OverlayView, StoreView,
                                               decode_entry, entry_key)
from lictor.server.configentry.validate import check_fields, graph_problems
from lictor.server.istio.documents import Resource, from_body
from lictor.server.istio.translate import ISTIO_META, translate

__all__ = ["ISTIO_TABLE", "Plan", "make_plan", "schema_supports"]

ISTIO_TABLE = "istio_resources"


def schema_supports(kind: str, path: str) -> bool:
    """Whether this build's schema of ``kind`` has the dotted field ``path`` (lists and maps are
    stepped through: ``Routes.Destination.PerTryTimeout``)."""
    t: Any = SCHEMAS.get(kind)
    for part in path.split("."):
        while isinstance(t, ListOf | MapOf):
            t = t.item
        if not isinstance(t, Obj) or part not in t.fields:
            return False
        t = t.fields[part]
    return True


@dataclass
class Plan:
    put_resources: list[Resource] = field(default_factory=list)
    delete_resources: list[tuple[str, str]] = field(default_factory=list)
    put_entries: list[dict[str, Any]] = field(default_factory=list)
    delete_entries: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"Applied": [r.ref for r in self.put_resources],
                "Deleted": [f"{k}/{n}" for k, n in self.delete_resources],
                "Warnings": list(self.warnings),
                "Entries": {"Write": [f"{e['Kind']}/{e['Name']}" for e in self.put_entries],
                            "Delete": [f"{k}/{n}" for k, n in self.delete_entries]}}


def stored_resource(key: tuple[str, str], row: Mapping[str, Any]) -> Resource:
    r = from_body(dict(row["body"]), f"{key[0]}/{key[1]}")
    return r


def _origin(body: Mapping[str, Any]) -> str | None:
    meta = body.get("Meta") or {}
    return meta.get(ISTIO_META) if isinstance(meta, Mapping) else None


def make_plan(table: Mapping[tuple[str, str], Any], view: Any, *, apply: Iterable[Resource] = (),
              delete: Iterable[tuple[str, str]] = (), datacenter: str = "dc1") -> Plan:
    plan = Plan()
    current = {k: stored_resource(k, row) for k, row in table.items()}
    after = dict(current)
    for key in delete:
        if key in after:
            del after[key]
            plan.delete_resources.append(key)
    for r in apply:
        if r.key not in current or current[r.key].body != r.body:
            plan.put_resources.append(r)
        after[r.key] = r
    t = translate(after.values(), supports=schema_supports)
    plan.warnings = t.warnings
    derived: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in t.entries:
        try:
            body = decode_entry(raw)
            check_fields(body)
        except ValidationError as e:
            raise ValidationError(f"{raw['Meta'][ISTIO_META]}: the {raw['Kind']} {raw['Name']!r} it implies is "
                                  f"invalid: {e}") from None
        key = entry_key(body)
        existing = view.get(body["Kind"], body["Name"])
        if existing is not None and _origin(existing) is None:
            raise ValidationError(f"{_first_where(after, raw)}: conflicts with the config entry {body['Kind']} "
                                  f"{body['Name']!r} written with the Consul API; delete one of them")
        derived[key] = body
        if existing != body:
            plan.put_entries.append(body)
    for kind in ALL_KINDS:
        for body in view.list(kind):
            if _origin(body) is not None and entry_key(body) not in derived:
                plan.delete_entries.append(entry_key(body))
    changes: dict[tuple[str, str], dict[str, Any] | None] = {entry_key(b): b for b in plan.put_entries}
    changes.update({k: None for k in plan.delete_entries})
    if changes:
        final = OverlayView(view, changes)
        for kind in sorted({k for k, _ in changes}):
            old = set(graph_problems(view, kind, datacenter=datacenter))
            new = [p for p in graph_problems(final, kind, datacenter=datacenter) if p not in old]
            if new:
                raise ValidationError(f"the config entries implied by the Istio resources are refused: {new[0]}")
    return plan


def _first_where(after: Mapping[tuple[str, str], Resource], raw: Mapping[str, Any]) -> str:
    refs = raw["Meta"][ISTIO_META].split(",")
    for r in after.values():
        if r.ref in refs:
            return r.where or r.ref
    return refs[0]


def store_view(store: Any) -> StoreView:
    return StoreView(store)
