"""What every test-managed agent process shares: its log, a tiny JSON client over its HTTP API,
and stopping it by PID (SIGTERM, then SIGKILL after a grace period)."""

from __future__ import annotations

import json
import os
from signal import SIGKILL, SIGTERM
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class ManagedProcess:
    """Subclasses set ``url``, ``log_path``, ``proc`` and ``_log`` (and usually ``name``)."""

    name = "agent"
    url: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: Any = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def request(self, method: str, path: str, body: Any = None, *, timeout: float = 10.0,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, raw = self.request(method, path, body, **kw)
        assert 200 <= status < 300, f"{self.name}: {method} {path} -> {status}: {raw!r}"
        return json.loads(raw) if raw else None

    def wait_http(self, path: str, timeout: float) -> None:
        """Until ``GET path`` answers 200; raises with the log if the process exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            try:
                status, _ = self.request("GET", path, timeout=0.5)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer within {timeout}s:\n{self.log_text()[-4000:]}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self, sig: int = SIGKILL) -> None:
        """Send ``sig`` (SIGKILL by default) and reap the process; a no-op if it is not running."""
        if not self.alive():
            return
        assert self.proc is not None
        os.kill(self.proc.pid, sig)
        self.proc.wait(15)
        self._close_log()

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, SIGKILL)
                self.proc.wait()
        self._close_log()
        return self.proc.returncode

    def _close_log(self) -> None:
        if self._log is not None and not self._log.closed:
            self._log.close()
