"""ScriptCheck: real subprocesses, exit codes, output capture, process-group kill on timeout."""

from __future__ import annotations

import asyncio
import os
import random
import sys
from pathlib import Path

import pytest

from lictor.agent.checks.base import StatusHandler
from lictor.agent.checks.script import ScriptCheck
from lictor.common.clock import ManualClock
from lictor.common.errors import ConfigError
from lictor.common.types import HealthStatus


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def script(handler: StatusHandler, code: str, **kw: object) -> ScriptCheck:
    return ScriptCheck(handler=handler, args=py(code), interval=10, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status"),
    [(0, HealthStatus.PASSING), (1, HealthStatus.WARNING), (2, HealthStatus.CRITICAL)],
)
async def test_exit_code_maps_to_status(
    handler: StatusHandler, code: int, status: HealthStatus
) -> None:
    c = script(handler, f"import sys; print('exit {code}'); sys.exit({code})")
    assert await c.check_once() == (status, f"exit {code}\n")


async def test_stdout_and_stderr_are_both_captured(handler: StatusHandler) -> None:
    c = script(
        handler,
        "import sys; print('out', flush=True); print('err', file=sys.stderr, flush=True)",
    )
    assert await c.check_once() == (HealthStatus.PASSING, "out\nerr\n")


async def test_death_by_signal_is_critical(handler: StatusHandler) -> None:
    c = script(handler, "import os, signal; os.kill(os.getpid(), signal.SIGTERM)")
    assert (await c.check_once())[0] == HealthStatus.CRITICAL


async def test_long_output_keeps_the_tail_with_a_marker(handler: StatusHandler) -> None:
    c = script(
        handler,
        "import sys; sys.stdout.write('a' * 100_000 + 'THE END')",
        output_max_size=10,
    )
    status, output = await c.check_once()
    assert status == HealthStatus.PASSING
    assert output == "Captured 10 of 100007 bytes\n...\naaaTHE END"


async def test_a_missing_command_is_critical(handler: StatusHandler, tmp_path: Path) -> None:
    c = ScriptCheck(handler=handler, args=[str(tmp_path / "nope")], interval=10)
    status, output = await c.check_once()
    assert status == HealthStatus.CRITICAL and "nope" in output


GRANDCHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open(sys.argv[1], "w").write(str(child.pid))
print("started", flush=True)
time.sleep(60)
"""


def gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie waiting for init to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def wait_gone(pid: int) -> bool:
    for _ in range(100):
        if gone(pid):
            return True
        await asyncio.sleep(0.01)
    return False


async def test_timeout_kills_the_whole_process_group(
    handler: StatusHandler, tmp_path: Path
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    c = ScriptCheck(
        handler=handler,
        args=[sys.executable, "-c", GRANDCHILD, str(pidfile)],
        interval=10,
        timeout=0.4,
    )
    assert await c.check_once() == (HealthStatus.CRITICAL, "Timed out (400ms) running check")
    grandchild = int(pidfile.read_text())
    assert await wait_gone(grandchild)


async def test_stop_during_a_run_kills_the_process_group(
    handler: StatusHandler, tmp_path: Path, zero_rng: random.Random
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    clock = ManualClock()
    c = ScriptCheck(
        handler=handler,
        args=[sys.executable, "-c", GRANDCHILD, str(pidfile)],
        interval=10,
        timeout=30,
        clock=clock,
        rng=zero_rng,
    )
    c.start()
    for _ in range(200):  # real time: the interpreter has to start
        if pidfile.exists() and pidfile.read_text():
            break
        await asyncio.sleep(0.01)
    grandchild = int(pidfile.read_text())
    await c.stop()
    assert await wait_gone(grandchild)
    assert not c.running


def test_empty_args_are_refused(handler: StatusHandler) -> None:
    with pytest.raises(ConfigError):
        ScriptCheck(handler=handler, args=[], interval=10)


async def test_runs_in_its_own_process_group(handler: StatusHandler) -> None:
    c = script(handler, "import os; print(os.getpgrp() == os.getpid(), os.getpgrp())")
    status, output = await c.check_once()
    leader, pgid = output.split()
    assert status == HealthStatus.PASSING and leader == "True"
    assert int(pgid) != os.getpgrp()
