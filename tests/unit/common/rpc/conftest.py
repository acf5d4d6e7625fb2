"""Fixtures for the RPC tests: a running server (port 0) with a scripted handler, and a client.

The helpers live in ``rpc_support.py``. This directory is deliberately not a package (a package
named ``rpc`` would clash with any other test package of that name under ``--import-mode=
importlib``), so the helpers are registered here under one unique module name that the test
files import: ``lictor_test_rpc_support``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lictor.common.rpc.conn import RPCClient, RPCServer


def _load_support() -> object:
    name = "lictor_test_rpc_support"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("rpc_support.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_support = _load_support()
ScriptedHandler = _support.ScriptedHandler  # type: ignore[attr-defined]
ZeroRandom = _support.ZeroRandom  # type: ignore[attr-defined]


@pytest.fixture
def handler() -> ScriptedHandler:
    return ScriptedHandler()


@pytest.fixture
async def server(handler: ScriptedHandler) -> AsyncIterator[RPCServer]:
    srv = RPCServer(handler, host="127.0.0.1", port=0, frame_timeout=0.2, idle_timeout=5.0)
    await srv.start()
    yield srv
    await srv.close()


@pytest.fixture
async def client() -> AsyncIterator[RPCClient]:
    c = RPCClient(connect_timeout=2.0, request_timeout=5.0, rng=ZeroRandom(),
                  backoff_base=0.01, backoff_max=0.05)
    yield c
    await c.close()


