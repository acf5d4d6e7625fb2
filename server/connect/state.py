"""CA rows, the CA configuration (parsing + validation) and the table functions over them.

Tables (``store.ext[...]``) and their index rows:

* ``ca_roots``: root ID -> :class:`CARoot`; index row ``"ca_roots"`` (blocking roots queries).
* ``ca_config``: ``"config"`` -> :class:`CAConfig`; index row ``"ca_config"``.
* ``ca_state``: root ID -> ``{"private_key_pem": ...}`` and ``"serial"`` -> ``{"next": int}``.
  Private keys: never returned by a read in this module except :func:`signing_key_pem`, which
  only the leader's provider calls. Index row ``"ca_state"`` (nobody watches it).
* ``system_metadata``: ``"cluster_id"`` -> UUID string (written once, by CA initialization).

``*_txn`` functions run inside the FSM's write transaction; reads take ``(store, ws)`` and return
``(index, result)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lictor.common.duration import format_duration, parse_duration
from lictor.common.errors import Conflict, ValidationError
from lictor.server.connect.ca import VALID_KEY_SPECS
from lictor.server.state.store import Store, WriteTxn
from lictor.server.state.watch import WatchSet

__all__ = [
    "CAConfig",
    "CARoot",
    "active_root",
    "ca_config",
    "ca_roots",
    "config_from_api",
    "config_to_api",
    "root_to_api",
    "roots_to_api",
    "signing_key_pem",
    "trust_domain",
]

HOUR = 3600.0

#: The margin past ``rotated_out_at + LeafCertTTL`` before an inactive root leaves the bundle,
#: for leaves signed just before the rotation and for clock skew.
PRUNE_MARGIN = HOUR


@dataclass(frozen=True, slots=True, kw_only=True)
class CAConfig:
    provider: str = "consul"
    cluster_id: str = ""
    leaf_cert_ttl: float = 72 * HOUR
    intermediate_cert_ttl: float = 8760 * HOUR
    root_cert_ttl: float = 87600 * HOUR
    rotation_period: float = 2160 * HOUR
    private_key_type: str = "ec"
    private_key_bits: int = 256
    csr_max_per_second: float = 50.0
    csr_max_concurrent: int = 0
    force_without_cross_signing: bool = False
    #: the durations as the operator last wrote them, (API name, text): a GET returns the Config
    #: as last written ("72h", not "72h0m0s"), as Consul stores the raw map
    written: tuple[tuple[str, str], ...] = ()
    create_index: int = 0
    modify_index: int = 0

    def __post_init__(self) -> None:
        # after a msgpack round trip (FSM payload, snapshot) the pairs arrive as lists
        if any(not isinstance(p, tuple) for p in self.written) or not isinstance(self.written, tuple):
            object.__setattr__(self, "written", tuple((str(k), str(v)) for k, v in self.written))

    def same_settings(self, other: CAConfig) -> bool:
        strip = {"create_index": 0, "modify_index": 0}
        return dataclasses.replace(self, **strip) == dataclasses.replace(other, **strip)

    def needs_new_root(self, other: CAConfig) -> bool:
        """A change of key type or size takes a new root (and so a rotation)."""
        return (self.private_key_type, self.private_key_bits) != (other.private_key_type, other.private_key_bits)


@dataclass(frozen=True, slots=True, kw_only=True)
class CARoot:
    id: str
    name: str
    serial_number: int
    signing_key_id: str
    external_trust_domain: str
    not_before: str  # RFC 3339, UTC
    not_after: str
    root_cert: str
    intermediate_certs: tuple[str, ...] = ()
    active: bool = True
    private_key_type: str = "ec"
    private_key_bits: int = 256
    rotated_out_at: float = 0.0  # leader wall clock of the rotation that retired it; 0 while active
    create_index: int = 0
    modify_index: int = 0


# ----------------------------------------------------------------------------- configuration
_CONFIG_KEYS = {
    "leafcertttl": "leaf_cert_ttl", "intermediatecertttl": "intermediate_cert_ttl",
    "rootcertttl": "root_cert_ttl", "rotationperiod": "rotation_period",
    "privatekeytype": "private_key_type", "privatekeybits": "private_key_bits",
    "csrmaxpersecond": "csr_max_per_second", "csrmaxconcurrent": "csr_max_concurrent",
}
_UNSUPPORTED = {"privatekey": "PrivateKey", "rootcert": "RootCert"}
_API_NAMES = {"leaf_cert_ttl": "LeafCertTTL", "intermediate_cert_ttl": "IntermediateCertTTL",
              "root_cert_ttl": "RootCertTTL", "rotation_period": "RotationPeriod",
              "private_key_type": "PrivateKeyType", "private_key_bits": "PrivateKeyBits",
              "csr_max_per_second": "CSRMaxPerSecond", "csr_max_concurrent": "CSRMaxConcurrent"}


def _norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def config_from_api(body: Any, *, current: CAConfig | None = None) -> CAConfig:
    """Parse and validate a ``PUT /v1/connect/ca/configuration`` body into a :class:`CAConfig`.

    Fields left out keep their current value (or the default); every error names its field. The
    cluster ID is never taken from the body."""
    if not isinstance(body, dict):
        raise ValidationError("CA configuration: expected a JSON object")
    base = current or CAConfig()
    provider = body.get("Provider", body.get("provider", base.provider)) or "consul"
    if provider != "consul":
        raise ValidationError(f"Provider: {provider!r} is not supported (only the built-in 'consul' provider)")
    raw = body.get("Config", body.get("config")) or {}
    if not isinstance(raw, dict):
        raise ValidationError("Config: expected a JSON object")
    values: dict[str, Any] = {}
    written = dict(base.written)
    for key, value in raw.items():
        n = _norm(str(key))
        if n in _UNSUPPORTED:
            raise ValidationError(f"Config.{_UNSUPPORTED[n]}: providing a root certificate or key is not supported "
                                  "by the built-in provider; rotate with \"Rotate\": true instead")
        field = _CONFIG_KEYS.get(n)
        if field is None:
            continue  # Consul ignores keys that a provider does not use (e.g. Vault's)
        name = f"Config.{_API_NAMES[field]}"
        if field.endswith("_ttl") or field == "rotation_period":
            values[field] = parse_duration(value, what=name)
            if isinstance(value, str):
                written[_API_NAMES[field]] = value.strip()
            else:
                written.pop(_API_NAMES[field], None)
        elif field == "private_key_type":
            if not isinstance(value, str):
                raise ValidationError(f"{name}: expected a string, got {value!r}")
            values[field] = value.lower()
        elif field in ("private_key_bits", "csr_max_concurrent"):
            values[field] = _int(value, name)
        else:
            values[field] = _number(value, name)
    force = body.get("ForceWithoutCrossSigning", body.get("force_without_cross_signing", False))
    if not isinstance(force, bool):
        raise ValidationError(f"ForceWithoutCrossSigning: expected true or false, got {force!r}")
    cfg = dataclasses.replace(base, provider=provider, force_without_cross_signing=force,
                              written=tuple(sorted(written.items())), **values)
    if "private_key_type" in values and "private_key_bits" not in values:
        # switching type without naming a size takes that type's default size
        cfg = dataclasses.replace(cfg, private_key_bits=VALID_KEY_SPECS.get(cfg.private_key_type, (0,))[0])
    validate_config(cfg)
    return cfg


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ValidationError(f"{name}: expected an integer, got {value!r}")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ValidationError(f"{name}: expected an integer, got {value!r}")
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise ValidationError(f"{name}: expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{name}: expected a number, got {value!r}") from None


def validate_config(c: CAConfig) -> None:
    if c.private_key_type not in VALID_KEY_SPECS:
        raise ValidationError(f"Config.PrivateKeyType: must be 'ec' or 'rsa', got {c.private_key_type!r}")
    allowed = VALID_KEY_SPECS[c.private_key_type]
    if c.private_key_bits not in allowed:
        raise ValidationError(f"Config.PrivateKeyBits: {c.private_key_bits} is not valid for "
                              f"{c.private_key_type!r} keys (allowed: {', '.join(map(str, allowed))})")
    if not HOUR <= c.leaf_cert_ttl <= 8760 * HOUR:
        raise ValidationError(f"Config.LeafCertTTL: must be between 1h and 8760h, got {format_duration(c.leaf_cert_ttl)}")
    if c.intermediate_cert_ttl < 3 * c.leaf_cert_ttl:
        raise ValidationError("Config.IntermediateCertTTL: must be at least 3 times LeafCertTTL "
                              f"({format_duration(3 * c.leaf_cert_ttl)}), got {format_duration(c.intermediate_cert_ttl)}")
    if c.root_cert_ttl < c.intermediate_cert_ttl:
        raise ValidationError(f"Config.RootCertTTL: must be at least IntermediateCertTTL "
                              f"({format_duration(c.intermediate_cert_ttl)}), got {format_duration(c.root_cert_ttl)}")
    if c.rotation_period <= 0:
        raise ValidationError("Config.RotationPeriod: must be positive")
    if c.csr_max_per_second < 0:
        raise ValidationError(f"Config.CSRMaxPerSecond: must not be negative, got {c.csr_max_per_second:g}")
    if c.csr_max_concurrent < 0:
        raise ValidationError(f"Config.CSRMaxConcurrent: must not be negative, got {c.csr_max_concurrent}")


def _duration_api(c: CAConfig, api_name: str, seconds: float) -> str:
    """As last written; else whole hours as Consul's defaults read ("72h"), else Go's form."""
    text = dict(c.written).get(api_name)
    if text is not None:
        return text
    if seconds >= HOUR and seconds % HOUR == 0:
        return f"{int(seconds // HOUR)}h"
    return format_duration(seconds)


def config_to_api(c: CAConfig) -> dict[str, Any]:
    return {
        "Provider": c.provider,
        "Config": {
            "LeafCertTTL": _duration_api(c, "LeafCertTTL", c.leaf_cert_ttl),
            "IntermediateCertTTL": _duration_api(c, "IntermediateCertTTL", c.intermediate_cert_ttl),
            "RootCertTTL": _duration_api(c, "RootCertTTL", c.root_cert_ttl),
            "RotationPeriod": _duration_api(c, "RotationPeriod", c.rotation_period),
            "PrivateKeyType": c.private_key_type,
            "PrivateKeyBits": c.private_key_bits,
            "CSRMaxPerSecond": c.csr_max_per_second,
            "CSRMaxConcurrent": c.csr_max_concurrent,
        },
        "State": None,
        "ForceWithoutCrossSigning": c.force_without_cross_signing,
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    }


def config_to_payload(c: CAConfig) -> dict[str, Any]:
    d = dataclasses.asdict(c)
    d.pop("create_index")
    d.pop("modify_index")
    return d


def root_to_api(r: CARoot) -> dict[str, Any]:
    return {
        "ID": r.id, "Name": r.name, "SerialNumber": r.serial_number, "SigningKeyID": r.signing_key_id,
        "ExternalTrustDomain": r.external_trust_domain, "NotBefore": r.not_before, "NotAfter": r.not_after,
        "RootCert": r.root_cert, "IntermediateCerts": list(r.intermediate_certs) or None, "Active": r.active,
        "PrivateKeyType": r.private_key_type, "PrivateKeyBits": r.private_key_bits,
        "CreateIndex": r.create_index, "ModifyIndex": r.modify_index,
    }


# ----------------------------------------------------------------------------- reads
def trust_domain(cluster_id: str) -> str:
    return f"{cluster_id}.consul"


def ca_config(store: Store, ws: WatchSet | None) -> tuple[int, CAConfig | None]:
    store.watch(ws, "ca_config")
    return store.index("ca_config"), store.ext["ca_config"].get("config")


def ca_roots(store: Store, ws: WatchSet | None) -> tuple[int, list[CARoot]]:
    """All roots, active first, then newest first."""
    store.watch(ws, "ca_roots")
    roots = sorted(store.ext["ca_roots"].values(), key=lambda r: (not r.active, -r.create_index))
    return store.index("ca_roots"), roots


def active_root(store: Store) -> CARoot | None:
    for r in store.ext["ca_roots"].values():
        if r.active:
            return r
    return None


def roots_to_api(store: Store, roots: list[CARoot]) -> dict[str, Any]:
    cfg = store.ext["ca_config"].get("config")
    active = next((r.id for r in roots if r.active), "")
    return {"ActiveRootID": active, "TrustDomain": trust_domain(cfg.cluster_id) if cfg else "",
            "Roots": [root_to_api(r) for r in roots]}


def signing_key_pem(store: Store, root_id: str) -> str | None:
    """The private key of a root (leader's provider only: never serve or log it)."""
    row = store.ext["ca_state"].get(root_id)
    return row.get("private_key_pem") if row else None


# ----------------------------------------------------------------------------- writes
def _root_from_payload(d: dict[str, Any], idx: int, *, create_index: int | None = None) -> CARoot:
    fields = {f.name for f in dataclasses.fields(CARoot)}
    d = {k: v for k, v in d.items() if k in fields}
    d["intermediate_certs"] = tuple(d.get("intermediate_certs") or ())
    d["create_index"] = create_index if create_index is not None else idx
    d["modify_index"] = idx
    return CARoot(**d)


def _config_row(d: dict[str, Any], idx: int, create_index: int) -> CAConfig:
    fields = {f.name for f in dataclasses.fields(CAConfig)} - {"create_index", "modify_index"}
    cfg = CAConfig(**{k: v for k, v in d.items() if k in fields}, create_index=create_index, modify_index=idx)
    validate_config(cfg)
    return cfg


def initialize_txn(tx: WriteTxn, p: dict[str, Any]) -> bool:
    """First root and configuration. A second initialize (a new leader that raced an old one) is
    a no-op returning False: the CA that committed first wins."""
    st = tx.store
    if st.ext["ca_config"].get("config") is not None:
        return False
    meta = st.ext["system_metadata"]
    cluster_id = meta.get("cluster_id") or p["cluster_id"]
    if "cluster_id" not in meta:
        tx.put(meta, "cluster_id", cluster_id)
        tx.bump("system_metadata")
    cfg = _config_row({**p["config"], "cluster_id": cluster_id}, tx.index, tx.index)
    root = _root_from_payload({**p["root"], "external_trust_domain": cluster_id, "active": True}, tx.index)
    tx.put(st.ext["ca_config"], "config", cfg)
    tx.put(st.ext["ca_roots"], root.id, root)
    tx.put(st.ext["ca_state"], root.id, {"private_key_pem": p["private_key_pem"]})
    tx.put(st.ext["ca_state"], "serial", {"next": int(p["serial_next"])})
    tx.bump("ca_config", "ca_roots", "ca_state")
    return True


def set_config_txn(tx: WriteTxn, p: dict[str, Any]) -> bool:
    st = tx.store
    cur: CAConfig | None = st.ext["ca_config"].get("config")
    if cur is None:
        raise Conflict("CA is not initialized yet")
    cas = p.get("cas")
    if cas is not None and int(cas) != cur.modify_index:
        return False
    cfg = _config_row({**p["config"], "cluster_id": cur.cluster_id}, tx.index, cur.create_index)
    if cfg.needs_new_root(cur) and not p.get("rotating"):
        raise ValidationError("Config.PrivateKeyType/PrivateKeyBits: a key change needs a root rotation")
    if cfg.same_settings(cur):
        return True
    tx.put(st.ext["ca_config"], "config", cfg)
    tx.bump("ca_config")
    return True


def rotate_txn(tx: WriteTxn, p: dict[str, Any], now: float) -> bool:
    """Make a new root active. ``p["old_root_id"]`` must still be the active root (a CAS, so two
    racing rotations cannot both win); the old root stays in the bundle, inactive."""
    st = tx.store
    roots = st.ext["ca_roots"]
    old = active_root(st)
    if old is None or old.id != p["old_root_id"]:
        raise Conflict(f"CA rotation lost a race: the active root is no longer {p['old_root_id']!r}")
    cur: CAConfig = st.ext["ca_config"]["config"]
    tx.put(roots, old.id, dataclasses.replace(old, active=False, rotated_out_at=now, modify_index=tx.index))
    new = _root_from_payload({**p["root"], "external_trust_domain": cur.cluster_id, "active": True}, tx.index)
    tx.put(roots, new.id, new)
    tx.put(st.ext["ca_state"], new.id, {"private_key_pem": p["private_key_pem"]})
    if p.get("config") is not None:
        set_config_txn(tx, {"config": p["config"], "rotating": True})
    tx.bump("ca_roots", "ca_state")
    return True


def reserve_serials_txn(tx: WriteTxn, p: dict[str, Any]) -> int:
    """Reserve ``count`` serial numbers; returns the first. Blocks never overlap, across leaders."""
    count = int(p["count"])
    if not 1 <= count <= 1_000_000:
        raise ValidationError(f"count: must be between 1 and 1000000, got {count}")
    st = tx.store
    row = st.ext["ca_state"].get("serial")
    if row is None:
        raise Conflict("CA is not initialized yet")
    first = int(row["next"])
    tx.put(st.ext["ca_state"], "serial", {"next": first + count})
    tx.bump("ca_state")
    return first


def prune_txn(tx: WriteTxn, p: dict[str, Any]) -> int:
    st = tx.store
    pruned = 0
    for rid in p["root_ids"]:
        r = st.ext["ca_roots"].get(rid)
        if r is None or r.active:
            continue  # never prune the active root, whatever the leader decided
        tx.delete(st.ext["ca_roots"], rid)
        tx.delete(st.ext["ca_state"], rid)
        pruned += 1
    if pruned:
        tx.bump("ca_roots", "ca_state")
    return pruned


def prunable_roots(store: Store, now: float) -> list[str]:
    """Inactive roots whose every leaf has expired: retired more than LeafCertTTL + margin ago."""
    cfg: CAConfig | None = store.ext["ca_config"].get("config")
    if cfg is None:
        return []
    return sorted(r.id for r in store.ext["ca_roots"].values()
                  if not r.active and r.rotated_out_at and now > r.rotated_out_at + cfg.leaf_cert_ttl + PRUNE_MARGIN)
