"""On-disk Raft stores: a segmented log with group commit, a hard-state file, a snapshot directory.

Layout of the three directories/files (each store owns its own)::

    <log dir>/
        00000000000000000001.seg    records 1..k     (sealed: full, fsynced before rotation)
        00000000000000000k+1.seg    records k+1..    (active: appended with pwrite)
        log.meta                    first index + compacted term (written only by compaction)
    <stable file>                   magic | len | crc32 | JSON {term, vote, commit}
    <snapshot dir>/
        <term>-<index>-<ms>/        state.bin + meta.json (index, term, conf_state, size, sha256)
        <term>-<index>-<ms>.tmp/    a snapshot being written (removed on open)

Segment record frame (little endian)::

    u32 length | u32 crc32 | u64 index | u64 term | u16 kind | data[length]
    crc32 = zlib.crc32(length | index | term | kind | data)

Durability rules (why each fsync is where it is):

* An append counts as persisted only after an fsync of every segment it wrote to, and of the
  directory when it created a segment. ``append`` does this before returning; ``append_async``
  batches: writes that arrive while one fsync runs (in an executor thread, on ``dup``-ed fds so a
  concurrent truncation cannot close them under it) share the next single fsync.
* A segment is fsynced before rotating away from it, so only the *last* segment can ever hold a
  torn tail. On open, an invalid record with nothing valid after it in the last segment is a torn
  tail: truncated and logged. Any other invalid record, an index discontinuity or a missing
  segment raises ``LogCorruptionError`` naming file, offset and index.
* Truncations fsync before the next write, so a crash can never leave new records followed by
  stale ones. Later segments are deleted newest first, so a crash leaves a contiguous prefix.
* Compaction first writes ``log.meta`` atomically (temp file, fsync, rename, fsync directory),
  then deletes whole segments below the new first index; open finishes an interrupted deletion.
* Any failed write or fsync poisons the store (``StoreFailedError`` from then on): after a failed
  fsync the kernel may have dropped the dirty pages, so retrying could claim false durability.

Every store takes ``fsync`` (default ``os.fsync``), the one seam through which all syncs go, so
tests prove durability by counting calls (fsync is too fast on this disk to time).
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
import hashlib
import json
import os
import re
import shutil
import struct
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from lictor.common.fsutil import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, ensure_private_dir

from .logstore import (
    DEFAULT_SNAPSHOT_RETAIN,
    HardStateRecord,
    LogCompactedError,
    LogCorruptionError,
    LogRecord,
    SnapshotCorruptionError,
    SnapshotData,
    SnapshotMeta,
    SnapshotNotFoundError,
    StableStoreCorruptionError,
    StorageError,
    StoreFailedError,
    VoteID,
    _check_range,
    _check_read,
    _iter_chunks,
    check_append,
    compaction_term,
    snapshot_id,
)

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "FRAME_HEADER_SIZE",
    "FileLogStore",
    "FileSnapshotStore",
    "FileStableStore",
    "FsyncFn",
    "encode_record",
    "fsync_dir",
]

_log = structlog.get_logger("lictor.raft.storage")

#: The seam every file store syncs through: called with an open file or directory descriptor.
FsyncFn = Callable[[int], None]

#: Segments rotate once the next record would push them past this size (a bigger record gets
#: a segment of its own).
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024

_FRAME = struct.Struct("<IIQQH")  # length, crc, index, term, kind
_CRC_FIELDS = struct.Struct("<IQQH")  # length, index, term, kind: what the crc covers (+ data)
FRAME_HEADER_SIZE = _FRAME.size
_INDEX_FIELD_OFFSET = 8  # byte offset of `index` inside a frame
_SEGMENT_RE = re.compile(r"^(\d{20})\.seg$")
_META_NAME = "log.meta"
_META = struct.Struct("<8sQQI")  # magic, first_index, compacted_term, crc32 of the rest
_META_MAGIC = b"LCTRLOG1"
#: How many following indexes the open-time scan looks for after a bad record to decide
#: between "torn tail" (nothing valid follows) and "corruption in the middle".
_RESYNC_WINDOW = 64


def encode_record(rec: LogRecord) -> bytes:
    """The on-disk frame of ``rec`` (header + data)."""
    length = len(rec.data)
    crc = zlib.crc32(rec.data, zlib.crc32(_CRC_FIELDS.pack(length, rec.index, rec.term, rec.kind)))
    return _FRAME.pack(length, crc, rec.index, rec.term, rec.kind) + rec.data


def _parse_frame(buf: bytes | memoryview, pos: int) -> tuple[LogRecord, int] | str:
    """Parse the frame at ``pos``: ``(record, end offset)``, or a reason string if invalid."""
    if len(buf) - pos < FRAME_HEADER_SIZE:
        return "incomplete record header"
    length, crc, index, term, kind = _FRAME.unpack_from(buf, pos)
    end = pos + FRAME_HEADER_SIZE + length
    if end > len(buf):
        return "record extends past end of file"
    data = bytes(buf[pos + FRAME_HEADER_SIZE : end])
    if zlib.crc32(data, zlib.crc32(_CRC_FIELDS.pack(length, index, term, kind))) != crc:
        return "checksum mismatch"
    return LogRecord(index=index, term=term, kind=kind, data=data), end


def fsync_dir(path: Path, fsync: FsyncFn = os.fsync) -> None:
    """fsync a directory, making renames, creations and deletions in it durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | bytearray | memoryview, offset: int | None = None) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[n:]
        if offset is not None:
            offset += n


def _atomic_write(path: Path, data: bytes, fsync: FsyncFn) -> None:
    """Replace ``path`` with ``data``: write a temp file, fsync it, rename, fsync the directory."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        _write_all(fd, data)
        fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent, fsync)


def _sync_fds(fds: list[int], fsync: FsyncFn) -> None:
    """Executor body of a group commit: fsync then close (they are dups) every fd."""
    try:
        for fd in fds:
            fsync(fd)
    finally:
        for fd in fds:
            os.close(fd)


# ============================================================================================
# Log


@dataclass(eq=False, slots=True)
class _Segment:
    """One segment file. ``offsets[i]`` is the byte offset of record ``base + i``."""

    base: int
    path: Path
    fd: int
    offsets: list[int] = field(default_factory=list)
    size: int = 0

    @property
    def last(self) -> int:
        return self.base + len(self.offsets) - 1

    def end_of(self, i: int) -> int:
        return self.offsets[i + 1] if i + 1 < len(self.offsets) else self.size


#: Key of the directory in the dirty map (segments are keyed by their object).
_DIR = None


def _files_first(item: object) -> bool:
    """Sort key: segment files before the directory (its fsync then also orders after them)."""
    key = item[0] if isinstance(item, tuple) else item
    return key is _DIR


class FileLogStore:
    """``LogStore`` on append-only segment files, with group commit (``append_async``).

    Opening scans every segment, rebuilds the index -> (segment, offset) map, recovers a torn
    tail and refuses corruption (see the module docstring). Reads use ``pread`` and verify each
    record's checksum. Not thread-safe: use from one thread (the event loop); only fsyncs run in
    ``executor`` (default: the loop's default executor).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: FsyncFn = os.fsync,
        executor: Executor | None = None,
    ) -> None:
        if segment_bytes < 1:
            raise ValueError("segment_bytes must be positive")
        self._dir = Path(directory)
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._executor = executor
        self._segments: list[_Segment] = []
        self._first = 1
        self._compacted_term = 0
        self._last = 0
        self._failed: BaseException | None = None
        self._closed = False
        # Group commit bookkeeping: every write gets a sequence number; a segment (or the
        # directory, key _DIR) is "dirty" with the highest sequence that touched it.
        self._write_seq = 0
        self._durable_seq = 0
        self._dirty: dict[_Segment | None, int] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        ensure_private_dir(self._dir)
        self._dir_fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._recover()
        except BaseException:
            self._close_fds()
            raise

    # ---------------------------------------------------------------- reads

    def first_index(self) -> int:
        return self._first

    def last_index(self) -> int:
        return self._last

    def compacted_term(self) -> int:
        return self._compacted_term

    @property
    def directory(self) -> Path:
        return self._dir

    def segment_paths(self) -> list[Path]:
        """The live segment files, oldest first (for tests and diagnostics)."""
        return [s.path for s in self._segments]

    def get(self, index: int) -> LogRecord:
        self._check_usable()
        _check_read(index, self._first, self._last)
        return self._read(index, index + 1, None)[0]

    def get_range(self, lo: int, hi: int, *, max_bytes: int | None = None) -> list[LogRecord]:
        self._check_usable()
        _check_range(lo, hi, self._first, self._last)
        return self._read(lo, hi, max_bytes) if lo < hi else []

    def _read(self, lo: int, hi: int, max_bytes: int | None) -> list[LogRecord]:
        out: list[LogRecord] = []
        budget = max_bytes
        k = bisect.bisect_right(self._segments, lo, key=lambda s: s.base) - 1
        index = lo
        while index < hi:
            seg = self._segments[k]
            a = index - seg.base
            b = min(hi, seg.last + 1) - seg.base  # exclusive
            if budget is not None:
                # Frame sizes are known from the offsets: stop before reading what won't fit.
                n = a
                while n < b:
                    size = seg.end_of(n) - seg.offsets[n] - FRAME_HEADER_SIZE
                    if size > budget and (out or n > a):
                        break
                    budget -= size
                    n += 1
                b = n
                if b == a:
                    break  # budget exhausted at a segment boundary
            start, end = seg.offsets[a], seg.end_of(b - 1)
            buf = os.pread(seg.fd, end - start, start)
            pos = 0
            for i in range(a, b):
                parsed = _parse_frame(buf, pos)
                if isinstance(parsed, str) or parsed[0].index != seg.base + i:
                    reason = parsed if isinstance(parsed, str) else "unexpected index"
                    raise LogCorruptionError(
                        f"{reason} on read", path=str(seg.path), offset=start + pos,
                        index=seg.base + i,
                    )
                out.append(parsed[0])
                pos = parsed[1]
            index = seg.base + b
            if b < min(hi, seg.last + 1) - seg.base:
                break  # budget exhausted
            k += 1
        return out

    # ---------------------------------------------------------------- writes

    def append(self, records: Sequence[LogRecord]) -> None:
        self._check_usable()
        check_append(records, self._first, self._last)
        if records:
            self._write(records)
            self._sync_now()

    def append_async(self, records: Sequence[LogRecord]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        self._check_usable()
        check_append(records, self._first, self._last)
        fut: asyncio.Future[None] = loop.create_future()
        if not records:
            fut.set_result(None)
            return fut
        seq = self._write(records)
        self._waiters.append((seq, fut))
        if self._flusher is None:
            self._flusher = loop.create_task(self._group_commit())
        return fut

    def truncate_suffix(self, from_index: int) -> None:
        self._check_usable()
        if from_index < self._first:
            raise LogCompactedError(
                f"cannot truncate from {from_index}: below first index {self._first}"
            )
        if from_index <= self._last:
            self._guard(self._truncate, from_index)

    def compact_prefix(self, upto_index: int, *, term: int | None = None) -> None:
        self._check_usable()
        if upto_index < self._first:
            return
        new_term = compaction_term(self, upto_index, term)
        self._guard(self._compact, upto_index, new_term)

    def close(self) -> None:
        if self._closed:
            return
        if self._failed is None and self._waiters:
            # Acknowledge what is still waiting rather than dropping it.
            try:
                self._sync_now()
            except StoreFailedError:
                pass
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        self._closed = True
        self._fail_waiters(StoreFailedError("log store closed"))
        self._close_fds()

    # ---------------------------------------------------------------- internals: writing

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise StoreFailedError(
                f"log store {self._dir} failed earlier and must be reopened: {self._failed}"
            ) from self._failed
        if self._closed:
            raise StoreFailedError(f"log store {self._dir} is closed")

    def _guard(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a mutating step; any OSError poisons the store."""
        try:
            return fn(*args)
        except OSError as exc:
            self._poison(exc)
            raise StoreFailedError(f"log store {self._dir}: {exc}") from exc

    def _poison(self, exc: BaseException) -> None:
        if self._failed is None:
            self._failed = exc
            _log.error("log store failed", directory=str(self._dir), error=str(exc))
        self._fail_waiters(StoreFailedError(f"log store {self._dir} failed: {exc}"))

    def _fail_waiters(self, exc: BaseException) -> None:
        waiters, self._waiters = self._waiters, []
        for _, fut in waiters:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: a waiter that gave up must not warn

    def _write(self, records: Sequence[LogRecord]) -> int:
        """Write (not sync) validated records; returns this write's sequence number."""
        return int(self._guard(self._write_unguarded, records))

    def _write_unguarded(self, records: Sequence[LogRecord]) -> int:
        if records[0].index <= self._last:
            self._truncate(records[0].index)
        self._write_seq += 1
        seq = self._write_seq
        seg = self._segments[-1] if self._segments else None
        pending = bytearray()
        offsets: list[int] = []
        for rec in records:
            frame = encode_record(rec)
            if seg is None:
                seg = self._new_segment(rec.index, seq)
            elif seg.size + len(pending) > 0 and (
                seg.size + len(pending) + len(frame) > self._segment_bytes
            ):
                self._flush(seg, pending, offsets, seq)
                pending, offsets = bytearray(), []
                # Seal: the old segment (and its directory entry, if new) is made durable before
                # anything lands in the next one, so only the last segment can ever have a torn
                # tail and a crash can never leave a later segment without an earlier one.
                self._fsync(seg.fd)
                self._dirty.pop(seg, None)
                if _DIR in self._dirty:
                    self._fsync(self._dir_fd)
                    del self._dirty[_DIR]
                seg = self._new_segment(rec.index, seq)
            offsets.append(seg.size + len(pending))
            pending += frame
        assert seg is not None
        self._flush(seg, pending, offsets, seq)
        self._last = records[-1].index
        return seq

    def _flush(self, seg: _Segment, buf: bytearray, offsets: list[int], seq: int) -> None:
        if not buf:
            return
        _write_all(seg.fd, buf, seg.size)
        seg.offsets.extend(offsets)
        seg.size += len(buf)
        self._dirty[seg] = seq

    def _new_segment(self, base: int, seq: int) -> _Segment:
        path = self._dir / f"{base:020d}.seg"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        seg = _Segment(base=base, path=path, fd=fd)
        self._segments.append(seg)
        self._dirty[_DIR] = seq
        return seg

    def _sync_now(self) -> None:
        """Synchronously fsync everything dirty, then acknowledge every write so far."""
        target = self._write_seq
        try:
            for key in sorted(self._dirty, key=_files_first):
                self._fsync(self._dir_fd if key is _DIR else key.fd)
        except OSError as exc:
            self._poison(exc)
            raise StoreFailedError(f"log store {self._dir}: fsync failed: {exc}") from exc
        self._dirty.clear()
        self._mark_durable(target)

    def _mark_durable(self, seq: int) -> None:
        self._durable_seq = max(self._durable_seq, seq)
        keep: list[tuple[int, asyncio.Future[None]]] = []
        for s, fut in self._waiters:
            if s > self._durable_seq:
                keep.append((s, fut))
            elif not fut.done():
                fut.set_result(None)
        self._waiters = keep

    async def _group_commit(self) -> None:
        """Flusher task: while anyone waits, fsync everything dirty in one executor call.

        Writes that arrive while that fsync runs are picked up by the next iteration's single
        fsync: that is the whole of group commit.
        """
        loop = asyncio.get_running_loop()
        try:
            while self._waiters and self._failed is None:
                target = self._write_seq
                taken = sorted(self._dirty.items(), key=_files_first)
                if taken:
                    fds: list[int] = []
                    try:
                        # dups: a truncation on the loop thread may close the originals.
                        for key, _ in taken:
                            fds.append(os.dup(self._dir_fd if key is _DIR else key.fd))
                    except OSError as exc:
                        for fd in fds:
                            os.close(fd)
                        self._poison(exc)
                        return
                    try:
                        await loop.run_in_executor(self._executor, _sync_fds, fds, self._fsync)
                    except OSError as exc:
                        self._poison(exc)
                        return
                    for key, _ in taken:
                        # Keep a key that was dirtied again after we took it.
                        if key in self._dirty and self._dirty[key] <= target:
                            del self._dirty[key]
                self._mark_durable(target)
        finally:
            if asyncio.current_task() is self._flusher:
                self._flusher = None

    def _truncate(self, from_index: int) -> None:
        """Drop records >= from_index (> first_index - 1 is guaranteed); durable on return."""
        removed = False
        while self._segments and self._segments[-1].base >= from_index:
            seg = self._segments.pop()  # newest first: a crash leaves a contiguous prefix
            self._dirty.pop(seg, None)
            os.close(seg.fd)
            os.unlink(seg.path)
            removed = True
        if removed:
            self._fsync(self._dir_fd)
        if self._segments and self._segments[-1].last >= from_index:
            seg = self._segments[-1]
            cut = seg.offsets[from_index - seg.base]
            os.ftruncate(seg.fd, cut)
            # Sync before any new write lands here, or a crash could expose new records
            # followed by stale bytes of the old ones.
            self._fsync(seg.fd)
            del seg.offsets[from_index - seg.base :]
            seg.size = cut
            self._dirty.pop(seg, None)
        self._last = from_index - 1

    def _compact(self, upto_index: int, term: int) -> None:
        _atomic_write(
            self._dir / _META_NAME, _encode_meta(upto_index + 1, term), self._fsync
        )
        self._first = upto_index + 1
        self._compacted_term = term
        self._last = max(self._last, upto_index)
        if self._drop_segments_below_first():
            self._fsync(self._dir_fd)

    def _drop_segments_below_first(self) -> bool:
        dropped = False
        while self._segments and self._segments[0].last < self._first:
            seg = self._segments.pop(0)
            self._dirty.pop(seg, None)
            os.close(seg.fd)
            os.unlink(seg.path)
            dropped = True
        return dropped

    def _close_fds(self) -> None:
        for seg in self._segments:
            os.close(seg.fd)
        self._segments = []
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    # ---------------------------------------------------------------- internals: recovery

    def _recover(self) -> None:
        meta_path = self._dir / _META_NAME
        meta_path.with_name(_META_NAME + ".tmp").unlink(missing_ok=True)
        if meta_path.exists():
            self._first, self._compacted_term = _decode_meta(meta_path)
        names = sorted(
            (int(m.group(1)), self._dir / m.group(0))
            for p in self._dir.iterdir()
            if (m := _SEGMENT_RE.match(p.name))
        )
        prev: _Segment | None = None
        for n, (base, path) in enumerate(names):
            if prev is not None and base != prev.last + 1:
                raise LogCorruptionError(
                    f"missing segment: expected one starting at index {prev.last + 1}",
                    path=str(path), offset=0, index=prev.last + 1,
                )
            fd = os.open(path, os.O_RDWR)
            seg = _Segment(base=base, path=path, fd=fd)
            self._segments.append(seg)
            self._scan(seg, is_last=n == len(names) - 1)
            if not seg.offsets and n < len(names) - 1:
                raise LogCorruptionError(
                    "empty segment before the last one", path=str(path), offset=0, index=base
                )
            prev = seg
        if self._drop_segments_below_first():  # finish a compaction interrupted by a crash
            self._fsync(self._dir_fd)
        if self._segments:
            head = self._segments[0]
            if head.base > self._first:
                raise LogCorruptionError(
                    f"missing segment(s): log starts at index {self._first} but the first "
                    f"segment starts at {head.base}",
                    path=str(head.path), offset=0, index=self._first,
                )
            self._last = self._segments[-1].last
        else:
            self._last = self._first - 1

    def _scan(self, seg: _Segment, *, is_last: bool) -> None:
        """Index every valid record of ``seg``; recover a torn tail if it is the last one."""
        buf = seg.path.read_bytes()
        pos, expected = 0, seg.base
        while pos < len(buf):
            parsed = _parse_frame(buf, pos)
            if isinstance(parsed, str):
                self._bad_record(seg, buf, pos, expected, parsed, is_last=is_last)
                break
            rec, end = parsed
            if rec.index != expected:
                raise LogCorruptionError(
                    f"index discontinuity: found index {rec.index}, expected {expected}",
                    path=str(seg.path), offset=pos, index=expected,
                )
            seg.offsets.append(pos)
            pos, expected = end, expected + 1
        seg.size = pos

    def _bad_record(
        self, seg: _Segment, buf: bytes, pos: int, index: int, reason: str, *, is_last: bool
    ) -> None:
        if not is_last:
            raise LogCorruptionError(
                f"{reason} in a sealed segment", path=str(seg.path), offset=pos, index=index
            )
        following = _find_valid_record(buf, pos + 1, index)
        if following is not None:
            where, found = following
            raise LogCorruptionError(
                f"{reason}, but a valid record (index {found} at offset {where}) follows it",
                path=str(seg.path), offset=pos, index=index,
            )
        os.ftruncate(seg.fd, pos)
        self._fsync(seg.fd)
        _log.warning(
            "truncated torn tail of raft log", path=str(seg.path), offset=pos, index=index,
            dropped_bytes=len(buf) - pos, reason=reason,
        )


def _find_valid_record(buf: bytes, start: int, index: int) -> tuple[int, int] | None:
    """A valid frame at or after ``start`` whose index is in ``index .. index+_RESYNC_WINDOW``.

    Found by searching for the encoded index field (C-speed ``bytes.find``) rather than trying
    every byte offset, so a torn tail of a huge record is cheap to classify.
    """
    for cand in range(index, index + _RESYNC_WINDOW):
        needle = struct.pack("<Q", cand)
        hit = buf.find(needle, start + _INDEX_FIELD_OFFSET)
        while hit != -1:
            frame_at = hit - _INDEX_FIELD_OFFSET
            parsed = _parse_frame(buf, frame_at)
            if not isinstance(parsed, str) and parsed[0].index == cand:
                return frame_at, cand
            hit = buf.find(needle, hit + 1)
    return None


def _encode_meta(first_index: int, compacted_term: int) -> bytes:
    body = _META.pack(_META_MAGIC, first_index, compacted_term, 0)[: _META.size - 4]
    return body + struct.pack("<I", zlib.crc32(body))


def _decode_meta(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    if len(raw) != _META.size:
        raise LogCorruptionError("bad log meta size", path=str(path), offset=0, index=None)
    magic, first, term, crc = _META.unpack(raw)
    if magic != _META_MAGIC or zlib.crc32(raw[:-4]) != crc or first < 1:
        raise LogCorruptionError("bad log meta checksum", path=str(path), offset=0, index=None)
    return first, term


# ============================================================================================
# Stable store

_HS_MAGIC = b"LCTRHS01"
_HS_HEADER = struct.Struct("<8sII")  # magic, payload length, crc32(payload)


class FileStableStore:
    """``StableStore`` in one small file, replaced atomically (temp, fsync, rename, fsync dir).

    The file is ``magic | length | crc32 | JSON``; a file that fails any check refuses to open
    with ``StableStoreCorruptionError``. ``load()`` answers from memory (this object is the only
    writer); identical consecutive saves do no I/O.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: FsyncFn = os.fsync) -> None:
        self._path = Path(path)
        self._fsync = fsync
        ensure_private_dir(self._path.parent)
        self._path.with_name(self._path.name + ".tmp").unlink(missing_ok=True)
        self._state = self._read() if self._path.exists() else HardStateRecord()

    @property
    def path(self) -> Path:
        return self._path

    def load(self) -> HardStateRecord:
        return self._state

    def save(self, term: int, vote: VoteID, commit: int) -> None:
        state = HardStateRecord(term=term, vote=vote, commit=commit)
        if state == self._state:
            return
        payload = json.dumps(
            {"term": term, "vote": vote, "commit": commit}, sort_keys=True
        ).encode()
        header = _HS_HEADER.pack(_HS_MAGIC, len(payload), zlib.crc32(payload))
        _atomic_write(self._path, header + payload, self._fsync)
        self._state = state

    def close(self) -> None:
        pass

    def _read(self) -> HardStateRecord:
        raw = self._path.read_bytes()
        try:
            magic, length, crc = _HS_HEADER.unpack_from(raw)
            payload = raw[_HS_HEADER.size :]
            if magic != _HS_MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
                raise ValueError("bad magic, length or checksum")
            obj = json.loads(payload)
            vote = obj["vote"]
            if not isinstance(vote, (int, str, type(None))):
                raise ValueError("bad vote")
            return HardStateRecord(term=int(obj["term"]), vote=vote, commit=int(obj["commit"]))
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            raise StableStoreCorruptionError(
                f"raft stable state {self._path} is corrupt ({exc}); refusing to start"
            ) from exc


# ============================================================================================
# Snapshot store

_SNAP_RE = re.compile(r"^(\d+)-(\d+)-(\d+)$")
_STATE_NAME = "state.bin"
_SNAP_META_NAME = "meta.json"
_CHUNK = 1 << 20


class _FileSink:
    """A snapshot being written into ``<id>.tmp/``; see ``SnapshotSink``."""

    def __init__(
        self, store: FileSnapshotStore, index: int, term: int, conf_state: Mapping[str, Any]
    ) -> None:
        self._store = store
        self._index = index
        self._term = term
        self._conf_state = json.loads(json.dumps(dict(conf_state)))  # copy; must be JSON-able
        self._ms = store._unique_ms(index, term)
        self._id = snapshot_id(term, index, self._ms)
        self._tmp = store.directory / f"{self._id}.tmp"
        self._tmp.mkdir(mode=PRIVATE_DIR_MODE)
        self._file: BinaryIO | None = os.fdopen(
            os.open(self._tmp / _STATE_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE), "wb")
        self._hash = hashlib.sha256()
        self._size = 0
        self._done = False

    def write(self, data: bytes) -> int:
        if self._done or self._file is None:
            raise StorageError("snapshot sink already committed or aborted")
        self._file.write(data)
        self._hash.update(data)
        self._size += len(data)
        return len(data)

    def commit(self) -> SnapshotMeta:
        if self._done or self._file is None:
            raise StorageError("snapshot sink already committed or aborted")
        fsync = self._store._fsync
        f, self._file = self._file, None
        try:
            f.flush()
            fsync(f.fileno())
        finally:
            f.close()
        meta = SnapshotMeta(
            id=self._id, index=self._index, term=self._term, conf_state=self._conf_state,
            size=self._size, sha256=self._hash.hexdigest(), created_ms=self._ms,
        )
        body = json.dumps(
            {
                "version": 1, "id": meta.id, "index": meta.index, "term": meta.term,
                "conf_state": meta.conf_state, "size": meta.size, "sha256": meta.sha256,
                "created_ms": meta.created_ms,
            },
            sort_keys=True, indent=1,
        ).encode()
        fd = os.open(self._tmp / _SNAP_META_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        try:
            _write_all(fd, body)
            fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self._tmp, fsync)
        os.rename(self._tmp, self._store.directory / self._id)
        fsync_dir(self._store.directory, fsync)
        self._done = True
        self._store._prune()
        return meta

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        if self._file is not None:
            self._file.close()
            self._file = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> _FileSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


class FileSnapshotStore:
    """``SnapshotStore`` as one directory per snapshot, ``<term>-<index>-<ms>/``.

    Each holds ``state.bin`` and ``meta.json``; it is written as ``<id>.tmp/`` (fsync file, meta
    and directory), renamed into place and the parent directory fsynced, then all but the newest
    ``retain`` are deleted. ``list()`` skips snapshots whose metadata is unreadable or whose
    size is wrong; ``latest()`` and ``open()`` also verify the sha256 (``latest()`` warns and
    falls back to an older snapshot). Leftover ``.tmp`` directories are removed on open.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        retain: int = DEFAULT_SNAPSHOT_RETAIN,
        fsync: FsyncFn = os.fsync,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        if retain < 1:
            raise ValueError("retain must be >= 1")
        self._dir = Path(directory)
        self._retain = retain
        self._fsync = fsync
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        ensure_private_dir(self._dir)
        for leftover in self._dir.glob("*.tmp"):
            _log.info("removing unfinished snapshot", path=str(leftover))
            shutil.rmtree(leftover, ignore_errors=True)

    @property
    def directory(self) -> Path:
        return self._dir

    def create(
        self, index: int, term: int, conf_state: Mapping[str, Any], data: SnapshotData
    ) -> SnapshotMeta:
        with self.sink(index, term, conf_state) as sink:
            for chunk in _iter_chunks(data):
                sink.write(chunk)
            return sink.commit()

    def sink(self, index: int, term: int, conf_state: Mapping[str, Any]) -> _FileSink:
        return _FileSink(self, index, term, conf_state)

    def list(self) -> list[SnapshotMeta]:
        metas: list[SnapshotMeta] = []
        for sid in self._ids():
            try:
                metas.append(self._read_meta(sid))
            except SnapshotCorruptionError as exc:
                _log.warning("skipping unreadable snapshot", id=sid, error=str(exc))
        return sorted(metas, key=lambda m: (m.index, m.term, m.created_ms), reverse=True)

    def latest(self) -> tuple[SnapshotMeta, BinaryIO] | None:
        for meta in self.list():
            try:
                return self.open(meta.id)
            except SnapshotCorruptionError as exc:
                _log.warning("skipping corrupt snapshot", id=meta.id, error=str(exc))
        return None

    def open(self, snapshot_id: str) -> tuple[SnapshotMeta, BinaryIO]:
        if not _SNAP_RE.match(snapshot_id) or not (self._dir / snapshot_id).is_dir():
            raise SnapshotNotFoundError(f"no snapshot {snapshot_id!r} in {self._dir}")
        meta = self._read_meta(snapshot_id)
        f = open(self._dir / snapshot_id / _STATE_NAME, "rb")  # noqa: SIM115
        try:
            h = hashlib.sha256()
            while block := f.read(_CHUNK):
                h.update(block)
            if h.hexdigest() != meta.sha256:
                raise SnapshotCorruptionError(
                    f"snapshot {self._dir / snapshot_id}: sha256 mismatch"
                )
            f.seek(0)
        except BaseException:
            f.close()
            raise
        return meta, f

    def close(self) -> None:
        pass

    # ---------------------------------------------------------------- internals

    def _ids(self) -> builtins.list[str]:
        return [p.name for p in self._dir.iterdir() if _SNAP_RE.match(p.name) and p.is_dir()]

    def _unique_ms(self, index: int, term: int) -> int:
        ms = self._clock_ms()
        while any(
            (self._dir / (snapshot_id(term, index, ms) + sfx)).exists() for sfx in ("", ".tmp")
        ):
            ms += 1
        return ms

    def _read_meta(self, sid: str) -> SnapshotMeta:
        d = self._dir / sid
        try:
            obj = json.loads((d / _SNAP_META_NAME).read_bytes())
            meta = SnapshotMeta(
                id=sid, index=int(obj["index"]), term=int(obj["term"]),
                conf_state=dict(obj["conf_state"]), size=int(obj["size"]),
                sha256=str(obj["sha256"]), created_ms=int(obj["created_ms"]),
            )
            if obj["id"] != sid:
                raise ValueError(f"meta.json names {obj['id']!r}")
            actual = (d / _STATE_NAME).stat().st_size
            if actual != meta.size:
                raise ValueError(f"state.bin is {actual} bytes, meta says {meta.size}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SnapshotCorruptionError(f"snapshot {d}: {exc}") from exc
        return meta

    def _prune(self) -> None:
        def order(sid: str) -> tuple[int, int, int]:
            term, index, ms = (int(x) for x in sid.split("-"))
            return index, term, ms

        doomed = sorted(self._ids(), key=order, reverse=True)[self._retain :]
        for sid in doomed:
            shutil.rmtree(self._dir / sid)
        if doomed:
            fsync_dir(self._dir, self._fsync)
