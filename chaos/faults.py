"""Disk and clock faults, from the runner's side.

* The test-only **fault hook** of a Lictor server (``lictor.server.raft.faults``), armed over its
  Unix control socket: failing (EIO) or, in the deliberately broken build, lying fsyncs, and
  jumps / rate changes of its Raft clock. A server started without ``LICTOR_TEST_FAULTS`` has no
  socket, so :func:`control` fails with :class:`HookUnavailable`.
* **Files while a server is stopped**: a torn last segment (a partial frame appended after the
  last record), a corrupted record in the middle of the log (one data byte flipped), and a
  power loss (every log file cut back to the size it had when the fault was armed, files
  created since then removed, small files such as the hard state restored).
* **A full disk**: each server's data directory is a size-limited tmpfs (mounted by the runner,
  unmounted afterwards); the nemesis fills it with a file and removes the file to clear it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["HookUnavailable", "control", "raft_log_dir", "tear_last_segment", "corrupt_middle_record",
           "DiskState", "mount_tmpfs", "unmount", "fill_disk", "records"]

# the on-disk frame of lictor.server.raft.filestore (u32 length | u32 crc | u64 index | u64 term |
# u16 kind | data); re-declared here because chaos/ never imports the product
FRAME = struct.Struct("<IIQQH")
SEGMENT_SUFFIX = ".seg"


class HookUnavailable(RuntimeError):
    pass


def control(sock_path: Path, req: dict[str, Any], timeout: float = 3.0) -> dict[str, Any]:
    """One request to a server's fault hook; raises HookUnavailable or RuntimeError."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(str(sock_path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise HookUnavailable(f"no fault hook at {sock_path}: {exc}") from exc
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    reply = json.loads(buf)
    if not reply.get("ok"):
        raise RuntimeError(f"fault hook refused {req}: {reply.get('error')}")
    return dict(reply)


def raft_log_dir(data_dir: Path) -> Path:
    return data_dir / "raft" / "log"


def _segments(log_dir: Path) -> list[Path]:
    return sorted(p for p in log_dir.glob("*" + SEGMENT_SUFFIX))


def records(path: Path) -> list[tuple[int, int, int]]:
    """(offset, index, total frame size) of every well-formed frame from the start of a segment."""
    buf = path.read_bytes()
    out, pos = [], 0
    while pos + FRAME.size <= len(buf):
        length, crc, index, term, kind = FRAME.unpack_from(buf, pos)
        end = pos + FRAME.size + length
        if end > len(buf):
            break
        data = buf[pos + FRAME.size:end]
        if zlib.crc32(data, zlib.crc32(struct.pack("<IQQH", length, index, term, kind))) != crc:
            break
        out.append((pos, index, end - pos))
        pos = end
    return out


def tear_last_segment(data_dir: Path) -> dict[str, Any]:
    """Append half a frame (a valid-looking header for the next index, then fewer data bytes than
    it announces) to the last segment: what a crash in the middle of an unsynced append leaves."""
    segs = _segments(raft_log_dir(data_dir))
    if not segs:
        return {"torn": False, "why": "no segment yet"}
    last = segs[-1]
    recs = records(last)
    nxt = recs[-1][1] + 1 if recs else int(last.stem)
    header = FRAME.pack(4096, 0xDEADBEEF, nxt, 1, 0)
    with open(last, "ab") as fh:
        fh.write(header + os.urandom(100))
    return {"torn": True, "file": last.name, "offset": last.stat().st_size - len(header) - 100,
            "index": nxt}


def corrupt_middle_record(data_dir: Path, rng: Any) -> dict[str, Any]:
    """Flip one data byte of a record with valid records after it (never the last record)."""
    segs = _segments(raft_log_dir(data_dir))
    cands: list[tuple[Path, int, int, int]] = []
    for seg in segs:
        recs = records(seg)
        for off, index, size in recs[:-1] if seg == segs[-1] else recs:
            if size > FRAME.size:
                cands.append((seg, off, index, size))
    if len(cands) < 3:
        return {"corrupted": False, "why": f"only {len(cands)} records"}
    seg, off, index, size = cands[rng.randrange(len(cands) // 4, len(cands) * 3 // 4)]
    pos = off + FRAME.size + rng.randrange(size - FRAME.size)
    with open(seg, "r+b") as fh:
        fh.seek(pos)
        b = fh.read(1)
        fh.seek(pos)
        fh.write(bytes([b[0] ^ 0x5A]))
    return {"corrupted": True, "file": str(seg), "offset": off, "index": index, "byte": pos}


@dataclass
class DiskState:
    """What the Raft directory held when a fault was armed: every file's size, and the content
    of the small non-segment files (hard state, log.meta, snapshot metadata)."""

    root: Path
    sizes: dict[str, int]
    small: dict[str, bytes]

    @classmethod
    def capture(cls, data_dir: Path) -> DiskState:
        root = data_dir / "raft"
        sizes, small = {}, {}
        for p in root.rglob("*"):
            if p.is_file():
                rel = str(p.relative_to(root))
                sizes[rel] = p.stat().st_size
                if not p.name.endswith(SEGMENT_SUFFIX) and sizes[rel] <= 1 << 20:
                    small[rel] = p.read_bytes()
        return cls(root, sizes, small)

    def power_loss(self) -> dict[str, int]:
        """Undo every write since :meth:`capture` (nothing was durable since then)."""
        cut = removed = restored = 0
        for p in sorted(self.root.rglob("*"), reverse=True):
            rel = str(p.relative_to(self.root))
            if p.is_dir():
                if not any(k.startswith(rel + "/") for k in self.sizes):
                    shutil.rmtree(p, ignore_errors=True)
                    removed += 1
                continue
            if rel not in self.sizes:
                p.unlink()
                removed += 1
            elif rel in self.small:
                if p.read_bytes() != self.small[rel]:
                    p.write_bytes(self.small[rel])
                    restored += 1
            elif p.stat().st_size > self.sizes[rel]:
                os.truncate(p, self.sizes[rel])
                cut += 1
        for rel, data in self.small.items():  # replaced by a rename and then deleted
            p = self.root / rel
            if not p.exists():
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
                restored += 1
        return {"files_cut": cut, "files_removed": removed, "files_restored": restored}


def mount_tmpfs(path: Path, size_mb: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path)],
                   check=True, capture_output=True, timeout=30)


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def is_mounted(path: Path) -> bool:
    return os.path.ismount(path)


def leftover_mounts() -> list[Path]:
    """tmpfs mounts shaped like a chaos run's data directories (``.../servers/sN/data``)."""
    out = []
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "tmpfs" and re.search(r"/servers/s\d+/data$", parts[1]):
            out.append(Path(parts[1]))
    return out


FILL_NAME = "chaos-fill"


def fill_disk(data_dir: Path) -> int:
    """Write zeros into ``data_dir/chaos-fill`` until the filesystem is full; returns bytes."""
    chunk = b"\0" * (1 << 20)
    n = 0
    with open(data_dir / FILL_NAME, "wb", buffering=0) as fh:
        while True:
            try:
                n += fh.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                while True:  # the last bytes
                    try:
                        w = fh.write(b"\0" * 4096)
                        if not w:
                            break
                        n += w
                    except OSError:
                        break
                return n


def clear_disk(data_dir: Path) -> None:
    (data_dir / FILL_NAME).unlink(missing_ok=True)
