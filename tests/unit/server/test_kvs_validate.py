"""Issue 18 item 17 on the server side: KV writes over RPC carry uint64 flags and indexes and a
key, whatever the HTTP layer of the sending agent checked."""

from __future__ import annotations

import pytest

from lictor.common.errors import ValidationError
from lictor.server.endpoints.kvs import validate_kv_args


@pytest.mark.parametrize("args", [
    {"op": "set", "key": "k", "value": b"v", "flags": -1},
    {"op": "set", "key": "k", "value": b"v", "flags": 2 ** 64},
    {"op": "set", "key": "k", "value": b"v", "flags": 1.5},
    {"op": "set", "key": "k", "value": b"v", "flags": True},
    {"op": "cas", "key": "k", "value": b"v", "cas": -3},
    {"op": "set", "key": "", "value": b"v"},
    {"op": "set", "key": 5, "value": b"v"},
    {"op": "set", "key": "k", "value": "not bytes"},
])
def test_refused(args: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        validate_kv_args(args)


@pytest.mark.parametrize("args", [
    {"op": "set", "key": "k", "value": b"v", "flags": 2 ** 64 - 1},
    {"op": "delete-tree", "key": ""},
    {"op": "cas", "key": "k", "value": None, "cas": 0},
])
def test_accepted(args: dict[str, object]) -> None:
    validate_kv_args(args)
