"""``lictor snapshot save|restore|inspect``: operator snapshots (``/v1/snapshot``).

``save`` writes the archive to a temporary file, fsyncs it, verifies it (checksums and state),
then renames it into place, so a failed save never leaves a half-written file under FILE.
``inspect`` reads a local file only (no agent needed). Format:
:mod:`lictor.server.snapshot_archive`.
"""

from __future__ import annotations

import os

from lictor.cli.base import err, fail, make_client, out, parse
from lictor.cli.flags import FlagSet
from lictor.cli.http import ClientError, add_http_flags
from lictor.cli.kv import columns

__all__ = ["SUBCOMMANDS"]


def _one_file(argv_args: list[str], what: str) -> str | None:
    if len(argv_args) != 1:
        err(f"This command takes one argument: <file> (got {len(argv_args)})")
        return None
    return argv_args[0]


def snapshot_save(argv: list[str]) -> int:
    from lictor.server.snapshot_archive import read_archive

    fs = FlagSet("lictor snapshot save [options] FILE",
                 "Saves an atomic, point-in-time snapshot of the state of the Lictor servers\n"
                 "(catalog, KV, sessions) into FILE. Reads from the leader unless -stale.")
    add_http_flags(fs)
    p = parse(fs, argv)
    path = _one_file(p.args, "save")
    if path is None:
        return 1
    client = make_client(p)
    try:
        resp = client.request("GET", "/v1/snapshot", read=True)
    except ClientError as exc:
        raise fail("Error saving snapshot: ", exc) from None
    try:
        archive = read_archive(resp.body)
    except ValueError as exc:
        raise fail("Error verifying snapshot: ", exc) from None
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(resp.body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        err(f"Error writing snapshot file {path}: {exc.strerror or exc}")
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return 1
    out(f"Saved and verified snapshot to index {archive.meta.get('Index')}")
    return 0


def _read_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        err(f"Error opening snapshot file {path}: {exc.strerror or exc}")
        return None


def snapshot_restore(argv: list[str]) -> int:
    fs = FlagSet("lictor snapshot restore [options] FILE",
                 "Restores the snapshot in FILE on every server of the cluster. Everything written\n"
                 "since the snapshot was taken is replaced.")
    add_http_flags(fs)
    p = parse(fs, argv)
    path = _one_file(p.args, "restore")
    if path is None:
        return 1
    data = _read_file(path)
    if data is None:
        return 1
    client = make_client(p)
    try:
        client.put("/v1/snapshot", body=data)
    except ClientError as exc:
        raise fail("Error restoring snapshot: ", exc) from None
    out("Restored snapshot")
    return 0


def snapshot_inspect(argv: list[str]) -> int:
    from lictor.server.snapshot_archive import read_archive, state_summary

    fs = FlagSet("lictor snapshot inspect FILE",
                 "Displays information about a snapshot file (verifies its checksums).")
    p = parse(fs, argv)
    path = _one_file(p.args, "inspect")
    if path is None:
        return 1
    data = _read_file(path)
    if data is None:
        return 1
    try:
        archive = read_archive(data)
    except ValueError as exc:
        raise fail(f"Error verifying snapshot file {path}: ", exc) from None
    m = archive.meta
    rows = [("ID", str(m.get("ID", ""))), ("Size", str(len(archive.state))),
            ("Index", str(m.get("Index", ""))), ("Term", str(m.get("Term", ""))),
            ("Version", str(m.get("Version", ""))), ("Format", str(m.get("Format", "")))]
    for line in columns(rows):
        out(line)
    out("")
    counts = state_summary(archive.state)
    table = [("Type", "Count")] + [(k, str(v)) for k, v in sorted(counts.items())]
    for line in columns(table):
        out(line)
    return 0


SUBCOMMANDS = {
    "save": (snapshot_save, "Saves snapshot of Lictor server state"),
    "restore": (snapshot_restore, "Restores snapshot of Lictor server state"),
    "inspect": (snapshot_inspect, "Displays information about a Lictor snapshot file"),
}
