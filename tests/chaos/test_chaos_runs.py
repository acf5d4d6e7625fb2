"""Real chaos runs: ``python -m chaos run`` as a subprocess, servers in network namespaces.

* etcd control: the checker passes a known-good system under kills, a pause and a partition;
* etcd broken (serializable reads treated as linearizable): the checker must FAIL. These two
  prove the checker can tell good from bad on real histories;
* the CI smoke against Lictor (60 s of workload: three leader kills, a pause, a partition);
* Ctrl-C leaves nothing behind;
* long runs (``-m slow``).

Every run must leave no namespace of its own and no live server PID (the runner logs every PID
it starts in ``servers/pids.log``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.chaos,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                       reason="needs root and iproute2 for network namespaces"),
]
needs_etcd = pytest.mark.skipif(shutil.which("etcd") is None,
                                reason="etcd not installed (apt-get install etcd-server)")


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.split()}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def assert_cleaned_up(out: Path) -> None:
    run = json.loads((out / "run.json").read_text())
    left = [ns for ns in _netns() if ns.startswith(f"lch-{run['run_id']}-")]
    assert not left, f"namespaces left behind: {left}"
    pids = [int(line.split()[1]) for line in (out / "servers" / "pids.log").read_text().splitlines()]
    assert pids, "no server was started?"
    assert not [p for p in pids if _alive(p)], "server processes left running"


def chaos_run(out: Path, *args: str, timeout: float) -> tuple[int, dict[str, Any], str]:
    p = subprocess.run([sys.executable, "-m", "chaos", "run", "--out", str(out), *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no summary line; rc={p.returncode}\n{p.stderr[-4000:]}"
    summary = json.loads(lines[-1])
    assert_cleaned_up(out)
    return p.returncode, summary, p.stderr


def assert_passed(rc: int, s: dict[str, Any], err: str) -> None:
    assert s.get("valid") is True and rc == 0, f"{json.dumps(s)}\n{err[-6000:]}"
    assert s["linearizable"] is True and s["lost_writes"] == 0
    assert s["checkers"] == {**s["checkers"], "lock_safety": True, "catalog_converged": True,
                             "lost_writes": True}


# ----------------------------------------------------------------------------- etcd control


@needs_etcd
def test_etcd_control_passes_under_faults(tmp_path: Path) -> None:
    rc, s, err = chaos_run(tmp_path / "out", "--system", "etcd", "--duration", "22", "--seed", "11",
                           "--nemesis", "kill-leader,pause,partition", timeout=180)
    assert_passed(rc, s, err)
    assert s["ops"] > 500 and s["ok"] > 400
    assert s["faults"].get("kill-leader", 0) >= 1 and s["faults"].get("pause", 0) >= 1
    assert s["faults"].get("partition", 0) >= 1
    assert (tmp_path / "out" / "timeline.png").stat().st_size > 10_000
    history = (tmp_path / "out" / "history.jsonl").read_text().splitlines()
    assert len(history) >= s["ops"]
    # the recorded history re-checks clean offline
    p = subprocess.run([sys.executable, "-m", "chaos", "check", "--out", str(tmp_path / "out")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and json.loads(p.stdout)["linearizable"] is True


@needs_etcd
def test_etcd_with_stale_reads_is_caught(tmp_path: Path) -> None:
    """Serializable reads from a random member, checked as linearizable: must FAIL."""
    rc, s, err = chaos_run(tmp_path / "out", "--system", "etcd", "--duration", "16", "--seed", "12",
                           "--nemesis", "partition", "--broken", "stale-reads", timeout=180)
    assert rc == 1 and s["valid"] is False, json.dumps(s)
    assert s["linearizable"] is False
    assert "not linearizable; shortest offending window" in err
    # the broken mode changes reads only: nothing acknowledged was lost
    assert s["lost_writes"] == 0


@needs_etcd
def test_ctrl_c_leaves_no_processes_or_namespaces(tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "chaos", "run", "--out", str(out), "--system", "etcd",
                          "--duration", "60", "--nemesis", "pause,partition"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the workload runs and a fault is in place
            pids = out / "servers" / "pids.log"
            if pids.exists() and len(pids.read_text().splitlines()) >= 3 and any(
                    ns.startswith("lch-") for ns in _netns()):
                break
            time.sleep(0.2)
        time.sleep(5)
        p.send_signal(signal.SIGINT)
        stdout, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 2 and "Interrupted" in stdout
    assert_cleaned_up(out)


@needs_etcd
def test_cleanup_command_removes_what_a_killed_runner_left(tmp_path: Path) -> None:
    """SIGKILL gives the runner no chance to clean up: `python -m chaos cleanup` must."""
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "chaos", "run", "--out", str(out), "--system", "etcd",
                          "--duration", "60", "--nemesis", "pause"], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        pids_log = out / "servers" / "pids.log"
        while time.monotonic() < deadline and not (
                pids_log.exists() and len(pids_log.read_text().splitlines()) >= 3):
            time.sleep(0.2)
        time.sleep(2)
    finally:
        p.kill()
        p.wait()
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    pids = [int(line.split()[1]) for line in pids_log.read_text().splitlines()]
    assert any(_alive(pid) for pid in pids), "expected orphaned servers after SIGKILL"
    assert any(ns.startswith(f"lch-{run_id}-") for ns in _netns())
    c = subprocess.run([sys.executable, "-m", "chaos", "cleanup", "--prefix", f"lch-{run_id}-"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert c.returncode == 0, c.stderr
    assert len(json.loads(c.stdout)["removed"]) == 4  # hub + 3 servers
    time.sleep(0.5)
    assert_cleaned_up(out)


# ----------------------------------------------------------------------------- Lictor


LICTOR_SMOKE = ["--system", "lictor", "--duration", "55", "--seed", "3",
                "--nemesis", "kill-leader,pause,kill-leader,partition,kill-leader"]


def test_lictor_smoke(tmp_path: Path) -> None:
    """The CI smoke (about 80 s): three leader kills, a pause and a partition under load must
    leave a linearizable history and no lost acknowledged write."""
    rc, s, err = chaos_run(tmp_path / "out", *LICTOR_SMOKE, timeout=240)
    assert_passed(rc, s, err)
    assert s["faults"].get("kill-leader", 0) >= 2, s["faults"]
    assert s["faults"].get("pause", 0) >= 1 and s["faults"].get("partition", 0) >= 1, s["faults"]
    assert s["ok"] > 500


@pytest.mark.slow
def test_lictor_with_stale_reads_is_caught(tmp_path: Path) -> None:
    rc, s, err = chaos_run(tmp_path / "out", "--system", "lictor", "--duration", "30", "--seed", "4",
                           "--nemesis", "partition", "--broken", "stale-reads", timeout=240)
    assert rc == 1 and s["linearizable"] is False, json.dumps(s)


@pytest.mark.slow
def test_lictor_long_run(tmp_path: Path) -> None:
    """The acceptance run: 15 minutes, every fault kind, at least 50 faults."""
    rc, s, err = chaos_run(tmp_path / "out", "--system", "lictor", "--duration", "900", "--seed", "7",
                           "--max-ops", "200000",
                           "--nemesis", "kill-leader,pause,partition,kill,partition,pause,restart-all",
                           timeout=1500)
    assert_passed(rc, s, err)
    assert s["faults_total"] >= 50, s["faults"]


@pytest.mark.slow
@needs_etcd
def test_etcd_five_members_long(tmp_path: Path) -> None:
    rc, s, err = chaos_run(tmp_path / "out", "--system", "etcd", "--servers", "5", "--duration", "120",
                           "--seed", "8", "--nemesis", "kill,pause,partition,restart-all", timeout=400)
    assert_passed(rc, s, err)


# ----------------------------------------------------------------------------- issue 19: disk,
# clock and membership faults


NEW_KINDS = ["disk-full", "fsync-error", "power-loss", "grow", "torn-tail", "corrupt-middle", "grow", "clock-jump",
             "clock-skew", "shrink", "stale-leader", "transfer-leader", "replace-server", "shrink",
             "leave-rejoin"]
NEW_FAULTS_SMOKE = ["--system", "lictor", "--duration", "135", "--seed", "19", "--quiet", "1,2",
                    "--spare", "2", "--nemesis", ",".join(NEW_KINDS)]


def test_lictor_new_faults_smoke(tmp_path: Path) -> None:
    """The 2-minute smoke of every new fault kind (about 135 s of workload; the cluster grows
    from 3 to 4 and 5 servers and shrinks back): linearizable, no lost write, and every server
    did what each fault expects of it (a stopped Raft after EIO, a truncated torn tail, a
    refusal naming the corrupt record, rejoining, leaving Raft...)."""
    out = tmp_path / "out"
    rc, s, err = chaos_run(out, *NEW_FAULTS_SMOKE, timeout=400)
    assert_passed(rc, s, err)
    assert s["checkers"]["fault_expectations"] is True and not s["fault_expectation_failures"]
    missing = [k for k in NEW_KINDS if not s["faults"].get(k)]
    assert not missing, f"kinds that never ran: {missing}; {s['faults']}"
    assert s["skipped_faults"] == {}
    faults_run = [json.loads(line) for line in (out / "faults.jsonl").read_text().splitlines()]
    grown = [f["detail"]["size"] for f in faults_run if f["kind"] == "grow"]
    assert grown[:2] == [4, 5], grown  # a 4th and a 5th server were added (the schedule may repeat)
    for k in NEW_KINDS:  # availability is reported per fault kind
        a = s["availability"][k]
        assert a["windows"] >= 1 and 0.0 <= (a["acked_share"] or 0.0) <= 1.0
    assert s["availability"]["none"]["acked_share"] > 0.9
    # the tmpfs data directories were unmounted, the fault sockets removed
    run = json.loads((out / "run.json").read_text())
    mounts = Path("/proc/mounts").read_text()
    assert str(out / "servers") not in mounts
    assert not list(Path("/tmp").glob(f"lch-{run['run_id']}-*.sock"))
    faults = [json.loads(line) for line in (out / "faults.jsonl").read_text().splitlines()]
    corrupt = [f for f in faults if f["kind"] == "corrupt-middle" and f["detail"].get("corrupted")]
    assert corrupt and all(f["detail"]["exit_code"] not in (None, 0) for f in corrupt)
    stale = [f for f in faults if f["kind"] == "stale-leader"]
    assert any(f["detail"]["believed_it_leads_throughout"] and f["detail"]["new_leader"] for f in stale), stale


@pytest.mark.slow
def test_lictor_power_loss_control_passes(tmp_path: Path) -> None:
    """The control for the self-test below: the same whole-cluster fsync failure and power loss
    against the correct build loses nothing acknowledged."""
    rc, s, err = chaos_run(tmp_path / "out", "--system", "lictor", "--duration", "30", "--seed", "8",
                           "--nemesis", "power-loss", timeout=300)
    assert_passed(rc, s, err)
    assert s["faults"].get("power-loss", 0) >= 1 and s["checkers"]["fault_expectations"] is True


@pytest.mark.slow
def test_lictor_lying_fsync_is_caught(tmp_path: Path) -> None:
    """Self-test of the fsync faults: fsyncs that report success without syncing (the broken
    build), on every server, then a whole-cluster power loss: acknowledged writes vanish and
    the checkers must say so."""
    rc, s, err = chaos_run(tmp_path / "out", "--system", "lictor", "--duration", "30", "--seed", "8",
                           "--nemesis", "power-loss", "--broken", "lying-fsync", timeout=300)
    assert rc == 1 and s["valid"] is False, json.dumps(s)
    assert s["faults"].get("power-loss", 0) >= 1
    assert (s["linearizable"] is False or s["lost_writes"] > 0
            or s["checkers"]["catalog_converged"] is False), json.dumps(s)


@pytest.mark.slow
def test_lictor_stale_reads_under_a_stale_leader_are_caught(tmp_path: Path) -> None:
    """Self-test of the clock faults: the same stale-leader fault with reads served locally
    (?stale) must be reported non-linearizable; without --broken it passes (the smoke)."""
    rc, s, err = chaos_run(tmp_path / "out", "--system", "lictor", "--duration", "30", "--seed", "4",
                           "--nemesis", "stale-leader,clock-skew,clock-jump", "--broken", "stale-reads",
                           timeout=300)
    assert rc == 1 and s["linearizable"] is False, json.dumps(s)


@pytest.mark.slow
@needs_etcd
def test_compare_with_etcd_same_nemesis(tmp_path: Path) -> None:
    """Lictor and the etcd control under the same nemesis and seed in one invocation; the
    summary puts their per-fault availability side by side."""
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "chaos", "run", "--out", str(out), "--system", "lictor",
                        "--compare", "etcd", "--duration", "45", "--seed", "9", "--nemesis",
                        "fsync-error,kill-leader,disk-full,partition,transfer-leader"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    s = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1])
    assert p.returncode == 0 and s["valid"] is True, p.stderr[-4000:]
    assert s["compare"] == ["lictor", "etcd"]
    assert s["availability"]["disk-full"]["lictor"] and s["availability"]["disk-full"]["etcd"]
    assert s["runs"]["lictor"]["faults"].get("fsync-error", 0) >= 1, s["runs"]["lictor"]["faults"]
    assert s["availability"]["fsync-error"]["etcd"] is None  # no fault hook in etcd: skipped
    assert s["runs"]["etcd"]["skipped_faults"].get("fsync-error", 0) >= 1
    for name in ("lictor", "etcd"):
        assert_cleaned_up(out / name)
