"""``check_update_interval`` end to end: real server and client agent processes (Consul's deferred
check sync, lictor.agent.local.state and lictor.agent.ae).

One server and two client agents on 127.0.0.1. ``c1`` runs with a short ``check_update_interval``
(from a config file); ``c2`` runs with ``check_update_interval = "0s"`` (no rate limit) and gets the
same updates, as the control that shows the measurement would catch a missing rate limit. A thread
on the side runs blocking queries on the server's ``/v1/health/node/<node>`` and records every
(status, output) of the TTL check that the server exposed, in order.

- (a) many output-only updates at the same status: the server's copy lags behind the agent's, moves
  at most once per interval (also while updates keep coming), only ever forwards, and converges to
  the last output within the interval (plus slack) after the updates stop; the control exposes
  nearly every update, which the rate-limited bound would not allow;
- (b) a status change reaches the server at once (well within the interval), carrying its output,
  and supersedes an output-only change still waiting.

Wall-clock bounds are upper bounds with generous slack, except HOLD (0.5 s, against a 4 s
interval); the counting bound is derived from measured durations, so a slow machine loosens it
instead of breaking it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.meshproc import Mesh, MeshAgent

pytestmark = pytest.mark.integration

INTERVAL = 4.0  # check_update_interval of the rate-limited client
BURST = 1.5 * INTERVAL  # how long output-only updates keep coming
PACE = 0.05  # pause between two updates
HOLD = 0.5  # how long an output-only change made right after a push is seen held back
CHECK = "beat"

Seen = tuple[float, str, str]  # (monotonic time first seen, status, output)


class CheckWatcher(threading.Thread):
    """Every distinct (status, output) of ``CHECK`` on ``node`` that ``server`` exposed, recorded by
    blocking queries on /v1/health/node/<node>, with the time it was first seen."""

    def __init__(self, server: MeshAgent, node: str) -> None:
        super().__init__(name=f"watch-{node}", daemon=True)
        self.server = server
        self.node = node
        self.seen: list[Seen] = []
        self._cond = threading.Condition()
        self._halt = threading.Event()

    def run(self) -> None:
        index = 0
        while not self._halt.is_set():
            try:
                idx, rows = self.server.indexed(f"/v1/health/node/{self.node}?index={index}&wait=1s", timeout=10)
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            now = time.monotonic()
            index = idx if idx >= index else 0  # an index that went back: start over (Consul's rule)
            cur = next(((r["Status"], r["Output"]) for r in rows if r["CheckID"] == CHECK), None)
            with self._cond:
                if cur is not None and (not self.seen or self.seen[-1][1:] != cur):
                    self.seen.append((now, *cur))
                    self._cond.notify_all()

    def halt(self) -> None:
        self._halt.set()
        self.join(15)
        assert not self.is_alive(), f"watcher of {self.node} did not stop"

    def wait_for(self, status: str, output: str, timeout: float) -> float:
        """The time the server was first seen exposing (status, output); AssertionError after timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, s, o in self.seen:
                    if (s, o) == (status, output):
                        return t
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"server never exposed {status}/{output!r} for {self.node} within "
                                         f"{timeout}s; seen: {[x[1:] for x in self.seen]}")
                self._cond.wait(left)

    def since(self, t0: float) -> list[Seen]:
        with self._cond:
            return [x for x in self.seen if x[0] >= t0]


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    limited = tmp_path / "limited.hcl"
    limited.write_text(f'check_update_interval = "{INTERVAL:g}s"\n')
    unlimited = tmp_path / "unlimited.hcl"
    unlimited.write_text('check_update_interval = "0s"\n')
    m = Mesh(tmp_path, servers=1, clients=2, distinct_hosts=False, extra=("-config-file", str(limited)))
    m.clients[1].extra = ("-config-file", str(unlimited))
    try:
        m.start(timeout=60)
        yield m
    finally:
        m.stop()


def update(agent: MeshAgent, status: str, output: str) -> None:
    agent.json("PUT", f"/v1/agent/check/update/{CHECK}", {"Status": status, "Output": output})


def remote(server: MeshAgent, node: str) -> tuple[str, str] | None:
    rows = server.json("GET", f"/v1/health/node/{node}")
    return next(((r["Status"], r["Output"]) for r in rows if r["CheckID"] == CHECK), None)


def local(agent: MeshAgent) -> tuple[str, str]:
    c = agent.json("GET", "/v1/agent/checks")[CHECK]
    return c["Status"], c["Output"]


def assert_held(server: MeshAgent, agent: MeshAgent, expected: tuple[str, str], hold: float = HOLD) -> None:
    """The server keeps showing ``expected`` for ``agent``'s check for ``hold`` seconds: an update
    made just after a push is held back (HOLD is far below INTERVAL, far above a push's latency)."""
    t0 = time.monotonic()
    while True:
        got = remote(server, agent.name)
        assert got == expected, f"an output-only change reached the server at once: {got} after {expected}"
        if time.monotonic() - t0 >= hold:
            return
        time.sleep(0.05)


def k_of(output: str) -> int:
    return int(output.removeprefix("out-"))


def test_output_changes_are_rate_limited_status_changes_are_not(mesh: Mesh) -> None:
    server = mesh.servers[0]
    limited, control = mesh.clients
    watch = {a.name: CheckWatcher(server, a.name) for a in (limited, control)}
    for w in watch.values():
        w.start()
    try:
        _run(server, limited, control, watch[limited.name], watch[control.name])
    except AssertionError as exc:
        logs = "\n".join(f"--- {a.name}\n{a.log_text()[-2500:]}" for a in mesh.agents)
        raise AssertionError(f"{exc}\n{logs}") from exc
    finally:
        for w in watch.values():
            w.halt()


def _run(server: MeshAgent, limited: MeshAgent, control: MeshAgent, w_lim: CheckWatcher,
         w_ctl: CheckWatcher) -> None:
    both = (limited, control)
    for a in both:
        a.json("PUT", "/v1/agent/check/register", {"Name": CHECK, "CheckID": CHECK, "TTL": "10m",
                                                   "Status": "warning"})
    for w in (w_lim, w_ctl):
        w.wait_for("warning", "", 20)
    # a status change is pushed at once: the baseline out-0 is on the server, and c1's interval
    # starts again from that push (which happened after t_base)
    t_base = time.monotonic()
    for a in both:
        update(a, "passing", "out-0")
    for w in (w_lim, w_ctl):
        w.wait_for("passing", "out-0", 20)

    # ----- (a) output-only updates, same status, for 1.5 intervals -----
    t_start = time.monotonic()
    outputs: list[str] = []
    while time.monotonic() - t_start < BURST:
        out = f"out-{len(outputs) + 1}"
        for a in both:
            update(a, "passing", out)
        outputs.append(out)
        if len(outputs) == 1:
            # out-0 was pushed moments ago: c1 holds out-1 back, and its server copy lags (c2's does not)
            assert local(limited) == ("passing", "out-1")
            assert_held(server, limited, ("passing", "out-0"))
        time.sleep(PACE)
    t_end = time.monotonic()
    final = outputs[-1]
    assert len(outputs) >= 20, f"only {len(outputs)} updates in {BURST}s: the box is too slow to tell"

    # converges to the last output within the interval after the updates stop (+ slack)
    t_conv = w_lim.wait_for("passing", final, INTERVAL + 6)
    t_ctl = w_ctl.wait_for("passing", final, 10)
    lim = [x for x in w_lim.since(t_start) if x[0] <= t_conv]
    ctl = [x for x in w_ctl.since(t_start) if x[0] <= t_ctl]
    lim_outs = [o for _, _, o in lim]
    # every copy the server exposed was a real update, in order, at the unchanged status
    assert all(s == "passing" for _, s, _ in lim), lim
    assert all(o in outputs for o in lim_outs), lim_outs
    assert [k_of(o) for o in lim_outs] == sorted({k_of(o) for o in lim_outs}), f"not forward only: {lim_outs}"
    # at most one output push per interval: each comes at least an interval after the one before,
    # the first an interval after the baseline push (made after t_base); measured times, so a slow
    # machine only loosens this
    bound = int((t_conv - t_base) / INTERVAL)
    assert len(lim) <= bound, (f"{len(lim)} output changes reached the server in {t_conv - t_base:.1f}s "
                               f"(interval {INTERVAL}s, bound {bound}, {len(outputs)} updates): "
                               f"{lim_outs[:10]}{' ...' if len(lim_outs) > 10 else ''}")
    # ...but not only after the updates stop: the server moves while they keep coming
    assert any(t < t_end and o != final for t, _, o in lim), f"nothing reached the server during the updates: {lim}"
    # the control (no rate limit) shows the watcher sees what the servers get: without the rate
    # limit the bound above would not hold
    assert len(ctl) > bound, f"control exposed only {len(ctl)} of {len(outputs)} outputs: the watcher is blind"
    print(f"{len(outputs)} updates in {t_end - t_start:.1f}s; server exposed {len(lim)} of them "
          f"(bound {bound}): {[(o, round(t - t_base, 2)) for t, _, o in lim]}, control {len(ctl)}; "
          f"converged {t_conv - t_end:.2f}s after the last update")

    # ----- (b) a status change is pushed at once, carrying its output -----
    # final was pushed just now: another output-only change waits...
    update(limited, "passing", "pending")
    assert local(limited) == ("passing", "pending")
    assert_held(server, limited, ("passing", final))
    # ...but a status change does not, and supersedes it
    t_fail = time.monotonic()
    limited.json("PUT", f"/v1/agent/check/fail/{CHECK}?note=boom")
    t_crit = w_lim.wait_for("critical", "boom", INTERVAL)
    assert t_crit - t_fail < INTERVAL / 2, f"status change took {t_crit - t_fail:.2f}s (interval {INTERVAL}s)"
    assert remote(server, limited.name) == ("critical", "boom")
    assert all(o != "pending" for _, _, o in w_lim.since(t_start)), "the superseded output reached the server"
    print(f"status change on the server {t_crit - t_fail:.3f}s after it was made")
