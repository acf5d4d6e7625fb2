"""Issue 18 items 13 and 19 on a real server process: the RPC port enforces the configured
limits.rpc_max_conns_per_client and rpc_handshake_timeout, and the data dir and Raft files are
private (an existing wider data dir is tightened, with a warning in the log)."""

from __future__ import annotations

import os
import socket
import stat
import struct
import time
from pathlib import Path

import pytest

from tests.integration.conftest import ServerProcess

pytestmark = pytest.mark.integration

LIMITS = 'limits { rpc_max_conns_per_client = 4 rpc_handshake_timeout = "500ms" }'


def closed_by_server(s: socket.socket, timeout: float) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except (TimeoutError, socket.timeout):
        return False
    except ConnectionResetError:
        return True


def test_rpc_limits_and_private_data_dir(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, "hard1", expect=1, extra=("-hcl", LIMITS))
    srv.data_dir.mkdir(mode=0o755)
    os.chmod(srv.data_dir, 0o755)
    held: list[socket.socket] = []
    try:
        srv.spawn().wait_http()
        # item 19: the data dir was tightened and said so; Raft's files are owner-only
        assert stat.S_IMODE(srv.data_dir.stat().st_mode) == 0o700
        assert "setting it to 0700" in srv.log_text()
        deadline = time.monotonic() + 10
        raft_files: list[Path] = []
        while time.monotonic() < deadline and not any(p.suffix == ".seg" for p in raft_files):
            raft_files = [p for p in srv.data_dir.rglob("*") if p.is_file() and "raft" in str(p)]
            time.sleep(0.1)
        assert any(p.suffix == ".seg" for p in raft_files), raft_files
        wide = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in raft_files
                if stat.S_IMODE(p.stat().st_mode) & 0o077}
        assert wide == {}

        # item 13: 4 connections from one client address, the 5th is closed at once
        def conn() -> socket.socket:
            return socket.create_connection(("127.0.0.1", srv.server_port), timeout=5,
                                            source_address=("127.0.0.9", 0))
        held = [conn() for _ in range(4)]
        time.sleep(0.2)
        extra = conn()
        assert closed_by_server(extra, 2.0), "a 5th RPC connection from one address was kept"
        extra.close()
        assert not closed_by_server(held[0], 0.1)
        # a first frame that keeps trickling but never completes is dropped after 500 ms
        slow = held.pop()
        slow.sendall(struct.pack(">I", 1_000_000) + b"\x00" * 100)
        t0 = time.monotonic()
        dropped = False
        while time.monotonic() - t0 < 3.0 and not dropped:
            try:
                slow.sendall(b"\x00")
            except (BrokenPipeError, ConnectionResetError):
                dropped = True
                break
            dropped = closed_by_server(slow, 0.05)
        slow.close()
        assert dropped and time.monotonic() - t0 < 2.0
        assert srv.leader(), "the server kept working"
    finally:
        for s in held:
            s.close()
        srv.stop()
