"""Failover under write load: an asyncio client (aiohttp) that records every request.

C workers (default 16) each loop: PUT a distinct key with a 100-byte value to "their" endpoint
(worker w starts on endpoint w mod N); on a failure (connection error, timeout, non-2xx, or a
Lictor answer other than ``true``) the worker records it and moves to the next endpoint. Every
request is recorded as (t_sent, t_done, ok, endpoint, what). The endpoints are the members that
survive the kill (the followers at the start), so the client never sends to the killed leader:
Lictor forwards writes to the leader, etcd followers forward proposals to theirs. Besides the
closed-loop workers a prober sends one more write every 25 ms (open loop, round-robin over the
endpoints), so the moment writes are accepted again is seen with 25 ms resolution even while
every worker hangs on a request that was lost with the leader (until the client timeout).

``analyse()`` turns the record into the failover figures (times relative to the SIGKILL):
  window_s      kill -> first success of a request sent at or after T, where T = the send time
                of the last request that failed (or the kill, if that is later). Using send times
                keeps requests that were in flight at the kill and hang until the client's timeout
                from stretching the window to that timeout, and counts requests that a follower
                holds until a new leader exists (neither failing nor succeeding) as unavailability.
  window_done_s the same from the last failure's *completion* time (the literal "first success
                after the last failure"; includes the client timeout for hung requests)
  gap_s         longest interval between two consecutive successful completions, over the
                interval from 1 s before the kill to the end (covers "requests hang" as well as
                "requests fail")
  first_ok_s    kill -> first success of a request *sent* after the kill
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Callable

import aiohttp

VALUE = b"v" * 100
VALUE_B64 = base64.b64encode(VALUE).decode()


@dataclass
class Record:
    t_sent: float
    t_done: float
    ok: bool
    endpoint: int
    what: str
    key: str


@dataclass
class FailoverRun:
    records: list[Record] = field(default_factory=list)
    t_kill: float = 0.0
    t_end: float = 0.0


async def _load(system: str, ports: list[int], conc: int, timeout: float, prefix: str, stop: asyncio.Event,
                run: FailoverRun, probe_every: float = 0.025) -> None:
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    to = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=conn, timeout=to) as s:
        async def one(key: str, port: int) -> tuple[bool, str]:
            try:
                if system == "etcd":
                    body = json.dumps({"key": base64.b64encode(key.encode()).decode(), "value": VALUE_B64})
                    async with s.post(f"http://127.0.0.1:{port}/v3/kv/put", data=body,
                                      headers={"Content-Type": "application/json"}) as r:
                        text = await r.read()
                        ok = r.status == 200
                else:
                    async with s.put(f"http://127.0.0.1:{port}/v1/kv/{key}", data=VALUE) as r:
                        text = await r.read()
                        ok = r.status == 200 and text.strip() == b"true"
                return ok, ("ok" if ok else f"http {r.status} {text[:60]!r}")
            except asyncio.TimeoutError:
                return False, "timeout"
            except aiohttp.ClientError as e:
                return False, type(e).__name__

        async def worker(w: int) -> None:
            ep = w % len(ports)
            n = 0
            while not stop.is_set():
                n += 1
                key = f"{prefix}/{w}/{n}"
                t0 = time.monotonic()
                ok, what = await one(key, ports[ep])
                run.records.append(Record(t0, time.monotonic(), ok, ep, what, key))
                if not ok:
                    ep = (ep + 1) % len(ports)
                    await asyncio.sleep(0.01)  # no hot spin on a refused connection

        async def probe_one(n: int) -> None:
            ep = n % len(ports)
            key = f"{prefix}/p/{n}"
            t0 = time.monotonic()
            ok, what = await one(key, ports[ep])
            run.records.append(Record(t0, time.monotonic(), ok, ep, "probe " + what, key))

        async def prober() -> None:
            # open loop: one extra write every probe_every s whatever is outstanding, so the time
            # writes are accepted again is seen even while every worker hangs on a lost request
            n, pending = 0, set()
            while not stop.is_set():
                n += 1
                t = asyncio.create_task(probe_one(n))
                pending.add(t)
                t.add_done_callback(pending.discard)
                await asyncio.sleep(probe_every)
            if pending:
                await asyncio.gather(*pending)

        await asyncio.gather(prober(), *(worker(w) for w in range(conc)))


async def _run(system: str, ports: list[int], conc: int, timeout: float, prefix: str, before: float,
               kill: Callable[[], None], settle: float, max_after: float) -> FailoverRun:
    run = FailoverRun()
    stop = asyncio.Event()
    task = asyncio.create_task(_load(system, ports, conc, timeout, prefix, stop, run))
    await asyncio.sleep(before)
    run.t_kill = time.monotonic()
    kill()  # SIGKILL by PID; fast (kill + waitpid), so blocking the loop here is fine
    # run until `settle` s passed with no failure after the kill (min 3 s), at most max_after s
    while True:
        await asyncio.sleep(0.1)
        now = time.monotonic()
        last_fail = max((r.t_done for r in run.records if not r.ok and r.t_done >= run.t_kill), default=run.t_kill)
        if now - run.t_kill >= max_after or (now - run.t_kill >= 3.0 and now - last_fail >= settle):
            break
    stop.set()
    await task
    run.t_end = time.monotonic()
    return run


def run_failover(system: str, ports: list[int], kill: Callable[[], None], conc: int = 16, timeout: float = 2.0,
                 prefix: str = "fo", before: float = 3.0, settle: float = 3.0, max_after: float = 30.0) -> FailoverRun:
    return asyncio.run(_run(system, ports, conc, timeout, prefix, before, kill, settle, max_after))


def analyse(run: FailoverRun) -> dict:
    k = run.t_kill
    recs = run.records
    fails_after = [r for r in recs if not r.ok and r.t_done >= k]
    oks = sorted(r.t_done for r in recs if r.ok)
    # window: the last failed request (by send time, not before the kill) -> the first success of
    # a request sent at or after it
    t_last = max([k] + [r.t_sent for r in fails_after])
    first = min((r.t_done for r in recs if r.ok and r.t_sent >= t_last), default=None)
    window = (first - k) if first is not None else None
    last_fail_done = max((r.t_done for r in fails_after), default=None)
    first_after_done = next((t for t in oks if last_fail_done is not None and t > last_fail_done), None)
    window_done = 0.0 if last_fail_done is None else (
        (first_after_done - k) if first_after_done is not None else None)
    pts = [t for t in oks if t >= k - 1.0]
    gap, gap_at = 0.0, None
    prev = max((t for t in oks if t < k - 1.0), default=k - 1.0)
    for t in pts:
        if t - prev > gap:
            gap, gap_at = t - prev, prev - k
        prev = t
    if run.t_end - prev > gap:  # still no success at the end
        gap, gap_at = run.t_end - prev, prev - k
    first_ok_sent_after = min((r.t_done for r in recs if r.ok and r.t_sent >= k), default=None)
    before = [r for r in recs if r.t_done < k]
    span_before = (k - min(r.t_sent for r in recs)) if recs else 0
    whats: dict[str, int] = {}
    for r in fails_after:
        whats[r.what] = whats.get(r.what, 0) + 1
    return {
        "window_s": window,
        "window_done_s": window_done,
        "gap_s": gap,
        "gap_starts_at_s": gap_at,
        "first_ok_sent_after_kill_s": (first_ok_sent_after - k) if first_ok_sent_after else None,
        "failed_after_kill": len(fails_after),
        "failure_kinds": whats,
        "requests": len(recs),
        "ok": sum(1 for r in recs if r.ok),
        "writes_per_s_before_kill": len([r for r in before if r.ok]) / span_before if span_before else 0,
        "observed_after_kill_s": run.t_end - k,
        # every request, relative to the kill: [t_sent, t_done, ok, endpoint, what] (rounded to 0.1 ms)
        "records": [[round(r.t_sent - k, 4), round(r.t_done - k, 4), int(r.ok), r.endpoint,
                     r.what if not r.ok else ("probe" if r.what.startswith("probe") else "")] for r in recs],
    }
