"""The audit log: every write and every denied HTTP request as one JSON line in a file.

::

    HTTP request --> app._audited (outermost wrapper, after the ACL check and the handler)
        should_record(method, decision)?  writes (non-GET/HEAD) and denials only
        AuditLog.record(event)  -> in-memory queue (never blocks the loop; bounded: drops counted)
                                   "guaranteed" sinks: the reply waits for the returned future
        flusher task, every flush_interval or when the queue fills a batch:
            one worker thread: FileSink.write_batch(lines)
                rotate first if the file would pass rotate_bytes or is older than rotate_duration
                (path -> <stem>-<unix nanos><suffix>, oldest beyond rotate_max_files deleted)
                write + flush; fsync per batch for "guaranteed" (and at rotation and close)

Each line (Consul Enterprise's shape, plus ``resource``/``decision``/``duration_ms``)::

    {"created_at": "2025-01-01T00:00:00.123456Z", "event_type": "audit",
     "payload": {"id": "<uuid>", "version": "1", "type": "HTTPEvent", "timestamp": "...",
       "auth": {"accessor_id": "<AccessorID>"},
       "request": {"operation": "PUT", "endpoint": "/v1/kv/app/x", "remote_addr": "127.0.0.1:5123",
                   "user_agent": "...", "resource": {"type": "key", "name": "app/x", "access": "write"}},
       "response": {"status": 200, "decision": "allow", "permission": null},
       "duration_ms": 1.234, "stage": "OperationComplete"}}

What is never written: the token (SecretID) from any source, the query string (``?token=``),
request and response headers and bodies. The accessor ID comes from the ACL layer's
``request["lictor_acl"]`` and is "anonymous" when ACLs did not resolve one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lictor.common.audit import AuditConfig, AuditSinkConfig

__all__ = ["ANONYMOUS_ACCESSOR", "AuditEvent", "AuditLog", "FileSink", "should_record"]

log = logging.getLogger("lictor.audit")

ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def should_record(method: str, decision: str) -> bool:
    """Writes (anything but GET/HEAD/OPTIONS) and every denial."""
    return decision == "deny" or method.upper() not in _READS


def _rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    time: float
    accessor_id: str
    remote_addr: str
    method: str
    endpoint: str
    status: int
    duration: float
    decision: str = "allow"
    permission: str | None = None
    resource_type: str = ""
    resource_name: str | None = None
    resource_access: str = ""
    user_agent: str = ""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_json(self) -> dict[str, Any]:
        ts = _rfc3339(self.time)
        return {
            "created_at": ts, "event_type": "audit",
            "payload": {
                "id": self.id, "version": "1", "type": "HTTPEvent", "timestamp": ts,
                "auth": {"accessor_id": self.accessor_id},
                "request": {"operation": self.method, "endpoint": self.endpoint,
                            "remote_addr": self.remote_addr, "user_agent": self.user_agent,
                            "resource": {"type": self.resource_type, "name": self.resource_name,
                                         "access": self.resource_access}},
                "response": {"status": self.status, "decision": self.decision,
                             "permission": self.permission},
                "duration_ms": round(self.duration * 1000, 3), "stage": "OperationComplete",
            },
        }

    def line(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=False).encode() + b"\n"


class FileSink:
    """One file sink. Synchronous: called from the audit worker thread only (or tests)."""

    def __init__(self, config: AuditSinkConfig, *, clock: Callable[[], float] = time.time,
                 fsync: Callable[[int], None] = os.fsync) -> None:
        self.config = config
        self.path = Path(config.path)
        self._clock = clock
        self._fsync = fsync
        self._f: Any = None
        self._size = 0
        self._opened_at = 0.0
        self._last_stamp = 0
        self.rotations = 0
        self.fsyncs = 0

    @property
    def guaranteed(self) -> bool:
        return self.config.delivery_guarantee == "guaranteed"

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.config.mode)
        self._f = os.fdopen(fd, "ab", buffering=0)
        st = os.fstat(fd)
        self._size = st.st_size
        # an existing file keeps its age from its creation as far as we can tell (ctime)
        self._opened_at = min(self._clock(), st.st_mtime) if self._size else self._clock()

    def _rotated_name(self) -> Path:
        stamp = time.time_ns()
        if stamp <= self._last_stamp:
            stamp = self._last_stamp + 1
        self._last_stamp = stamp
        return self.path.with_name(f"{self.path.stem}-{stamp}{self.path.suffix}")

    def rotated_files(self) -> list[Path]:
        """Rotated files of this sink, oldest first."""
        prefix, suffix = f"{self.path.stem}-", self.path.suffix
        out = []
        for p in self.path.parent.glob(f"{prefix}*{suffix}"):
            middle = p.name[len(prefix):len(p.name) - len(suffix) if suffix else None]
            if middle.isdigit():
                out.append((int(middle), p))
        return [p for _, p in sorted(out)]

    def _rotate(self) -> None:
        if self._f is not None:
            self._do_fsync()
            self._f.close()
            self._f = None
        if self.path.exists() and self.path.stat().st_size > 0:
            os.replace(self.path, self._rotated_name())
            self.rotations += 1
        keep = self.config.rotate_max_files
        if keep > 0:
            old = self.rotated_files()
            for p in old[:max(0, len(old) - keep)]:
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
        self._open()

    def _do_fsync(self) -> None:
        if self._f is not None:
            self._fsync(self._f.fileno())
            self.fsyncs += 1

    def write_batch(self, lines: list[bytes]) -> None:
        if self._f is None:
            self._open()
        c = self.config
        buf: list[bytes] = []
        pending = 0
        for line in lines:
            too_big = c.rotate_bytes > 0 and self._size + pending + len(line) > c.rotate_bytes
            too_old = c.rotate_duration > 0 and self._clock() - self._opened_at >= c.rotate_duration
            if (too_big or too_old) and self._size + pending > 0:
                if buf:
                    self._f.write(b"".join(buf))
                    self._size += pending
                    buf, pending = [], 0
                self._rotate()
            buf.append(line)
            pending += len(line)
        if buf:
            self._f.write(b"".join(buf))
            self._size += pending
        if self.guaranteed:
            self._do_fsync()

    def close(self) -> None:
        if self._f is not None:
            self._do_fsync()
            self._f.close()
            self._f = None


class AuditLog:
    """The agent's audit log: a queue in front of the sinks and one background flusher."""

    def __init__(self, config: AuditConfig, *, flush_interval: float = 0.05, max_queue: int = 100_000,
                 batch: int = 512, sinks: list[FileSink] | None = None) -> None:
        self.config = config
        self.sinks = sinks if sinks is not None else [FileSink(s) for s in config.sinks]
        self.guaranteed = any(s.guaranteed for s in self.sinks)
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._batch = batch
        self._queue: list[tuple[bytes, asyncio.Future[None] | None]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lictor-audit")
        self._closed = False
        self.recorded = 0
        self.written = 0
        self.dropped = 0
        self.errors = 0

    async def start(self) -> None:
        self._wake = asyncio.Event()
        # open (and create) the files now so a bad path fails at start, not at the first write
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._open_all)
        self._task = loop.create_task(self._flusher(), name="audit-flusher")

    def _open_all(self) -> None:
        for s in self.sinks:
            s.write_batch([])

    def record(self, event: AuditEvent) -> asyncio.Future[None] | None:
        """Queue ``event``; never blocks. With a "guaranteed" sink returns a future that is done
        once the line is written and fsynced (the HTTP reply waits for it)."""
        if self._closed:
            return None
        if len(self._queue) >= self._max_queue:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.error("audit log queue full: %d events dropped", self.dropped)
            return None
        fut: asyncio.Future[None] | None = None
        if self.guaranteed:
            fut = asyncio.get_running_loop().create_future()
        self._queue.append((event.line(), fut))
        self.recorded += 1
        if self._wake is not None and (fut is not None or len(self._queue) >= self._batch):
            self._wake.set()
        return fut

    async def _flusher(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write everything queued so far (in the worker thread)."""
        if not self._queue:
            return
        items, self._queue = self._queue, []
        lines = [line for line, _ in items]
        err: BaseException | None = None
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._write, lines)
            self.written += len(lines)
        except OSError as exc:
            self.errors += 1
            err = exc
            log.error("audit log write failed (%d events lost): %s", len(lines), exc.strerror or exc)
        for _, fut in items:
            if fut is not None and not fut.done():
                if err is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(err)

    def _write(self, lines: list[bytes]) -> None:
        for s in self.sinks:
            s.write_batch(lines)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.flush()
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, lambda: [s.close() for s in self.sinks])
        self._executor.shutdown(wait=False)


# ============================================================================ HTTP hook


def audited(acl: Any, agent: Any, inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wrap one route's (already ACL-wrapped) handler so its writes and denials are recorded.

    ``acl`` is the route's :class:`~lictor.agent.http.base.ACL` (resource, access, segment).
    The ACL layer's verdict is read from ``request["lictor_acl"]`` = ``{"accessor_id",
    "decision": "allow"|"deny", "permission"}`` after the handler returns; when absent the
    request is anonymous and allowed unless it ended in 403. Costs one dict lookup when the
    agent has no audit log."""
    from aiohttp import web

    async def handler(req: web.Request) -> web.StreamResponse:
        audit: AuditLog | None = getattr(agent, "audit", None)
        if audit is None:
            return await inner(req)  # type: ignore[no-any-return]
        t0, started = time.time(), time.monotonic()
        status = 500
        failed = True
        try:
            resp = await inner(req)
            status = resp.status
            failed = False
            return resp  # type: ignore[no-any-return]
        except web.HTTPException as exc:
            status = exc.status
            failed = False
            raise
        finally:
            verdict = req.get("lictor_acl") or {}
            decision = str(verdict.get("decision") or ("deny" if status == 403 else "allow"))
            if should_record(req.method, decision):
                seg = getattr(acl, "segment", None)
                peer = req.transport.get_extra_info("peername") if req.transport is not None else None
                remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(req.remote or "")
                fut = audit.record(AuditEvent(
                    time=t0, accessor_id=str(verdict.get("accessor_id") or ANONYMOUS_ACCESSOR),
                    remote_addr=remote, method=req.method, endpoint=req.path, status=status,
                    duration=time.monotonic() - started, decision=decision,
                    permission=verdict.get("permission"), resource_type=getattr(acl, "resource", ""),
                    resource_name=req.match_info.get(seg) if seg else None,
                    resource_access=getattr(acl, "access", ""),
                    user_agent=req.headers.get("User-Agent", "")[:256]))
                if fut is not None and not failed:
                    await fut  # "guaranteed": the reply leaves once the line is on disk

    return handler
