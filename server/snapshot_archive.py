"""The operator snapshot file (`GET/PUT /v1/snapshot`, `lictor snapshot save|restore|inspect`).

Consul's container, our payload: a gzip-compressed tar with three members, in this order::

    meta.json    {"Version": 1, "ID": "<term>-<index>-<unix ms>", "Index": n, "Term": t,
                  "Size": <bytes of state.bin>, "Format": "lictor-fsm-v1",
                  "Configuration": {"Servers": [{"ID", "Address", "Voter"}]}}
    state.bin    the FSM snapshot stream (`FSMSnapshot.persist`: msgpack header + rows + "end")
    SHA256SUMS   "<sha256 hex>  meta.json\n<sha256 hex>  state.bin\n" (sha256sum's format)

`read_archive` refuses anything else with `ValueError` naming the problem: not gzip, not a tar,
missing or extra members, a member larger than the limit, a checksum that does not match, a
meta.json that is not what we write, or a state stream our FSM cannot load. (Consul's own
state.bin is Consul's FSM encoding and is refused with a clear "format" message.)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["FORMAT", "MAX_STATE_BYTES", "SnapshotArchive", "build_archive", "read_archive"]

FORMAT = "lictor-fsm-v1"
MAX_STATE_BYTES = 12 << 20
"""A restored state travels as one Raft entry inside one RPC frame (16 MiB)."""
MAX_ARCHIVE_BYTES = 16 << 20
_MEMBERS = ("meta.json", "state.bin", "SHA256SUMS")


@dataclass(frozen=True, slots=True)
class SnapshotArchive:
    meta: dict[str, Any]
    state: bytes


def build_archive(state: bytes, *, index: int, term: int,
                  servers: list[dict[str, Any]] | None = None) -> bytes:
    meta = {"Version": 1, "ID": f"{term}-{index}-{int(time.time() * 1000)}", "Index": index,
            "Term": term, "Size": len(state), "Format": FORMAT,
            "Configuration": {"Servers": servers or []}}
    meta_b = json.dumps(meta, indent=2, sort_keys=True).encode()
    sums = "".join(f"{hashlib.sha256(b).hexdigest()}  {n}\n"
                   for n, b in (("meta.json", meta_b), ("state.bin", state))).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("meta.json", meta_b), ("state.bin", state), ("SHA256SUMS", sums)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = int(time.time())
            ti.mode = 0o600
            tar.addfile(ti, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def read_archive(data: bytes, *, validate_state: bool = True) -> SnapshotArchive:
    """Parse and verify an archive; `ValueError` says what is wrong with it."""
    if len(data) > MAX_ARCHIVE_BYTES:
        raise ValueError(f"snapshot is too large ({len(data)} bytes, limit {MAX_ARCHIVE_BYTES})")
    if data[:2] != b"\x1f\x8b":
        raise ValueError("not a snapshot archive: the data is not gzip-compressed")
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
            raw = gz.read(MAX_STATE_BYTES * 2 + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(f"not a snapshot archive: broken gzip stream ({exc})") from None
    if len(raw) > MAX_STATE_BYTES * 2:
        raise ValueError("snapshot archive expands beyond the size limit")
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for ti in tar:
                if ti.name not in _MEMBERS or not ti.isfile():
                    raise ValueError(f"unexpected member {ti.name!r} in the snapshot archive")
                if ti.name in members:
                    raise ValueError(f"duplicate member {ti.name!r} in the snapshot archive")
                if ti.size > MAX_STATE_BYTES:
                    raise ValueError(f"member {ti.name} is too large ({ti.size} bytes)")
                f = tar.extractfile(ti)
                assert f is not None
                members[ti.name] = f.read()
    except tarfile.TarError as exc:
        raise ValueError(f"not a snapshot archive: broken tar ({exc})") from None
    missing = [m for m in _MEMBERS if m not in members]
    if missing:
        raise ValueError(f"snapshot archive lacks {', '.join(missing)}")
    sums: dict[str, str] = {}
    for line in members["SHA256SUMS"].decode("utf-8", "replace").splitlines():
        digest, _, name = line.strip().partition("  ")
        if name:
            sums[name] = digest
    for name in ("meta.json", "state.bin"):
        want = sums.get(name)
        if want is None:
            raise ValueError(f"SHA256SUMS has no entry for {name}")
        got = hashlib.sha256(members[name]).hexdigest()
        if got != want:
            raise ValueError(f"checksum mismatch for {name}: SHA256SUMS says {want}, "
                             f"the data hashes to {got}")
    try:
        meta = json.loads(members["meta.json"])
    except ValueError as exc:
        raise ValueError(f"meta.json is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("Index"), int):
        raise ValueError("meta.json lacks an integer Index")
    if meta.get("Format") != FORMAT:
        raise ValueError(f"unsupported snapshot format {meta.get('Format')!r} (this server reads "
                         f"{FORMAT!r}; Consul's own snapshots cannot be restored into Lictor)")
    state = members["state.bin"]
    if validate_state:
        from lictor.server.fsm import FSM

        try:
            FSM().restore(io.BytesIO(state))
        except Exception as exc:  # noqa: BLE001 - any decoding problem means "not our state"
            raise ValueError(f"state.bin cannot be loaded: {exc}") from None
    return SnapshotArchive(meta=meta, state=state)


def state_summary(state: bytes) -> dict[str, int]:
    """Rows per table of a state stream (for `lictor snapshot inspect`)."""
    import msgpack

    counts: dict[str, int] = {}
    unpacker = msgpack.Unpacker(io.BytesIO(state), raw=False, strict_map_key=False)
    next(unpacker)
    for item in unpacker:
        if not isinstance(item, list) or len(item) != 2:
            break
        table, body = item
        if table == "end":
            break
        if table in ("tombstones", "lock_delay", "indexes"):
            counts[str(table)] = len(body or {})
        else:
            counts[str(table)] = counts.get(str(table), 0) + 1
    return counts
