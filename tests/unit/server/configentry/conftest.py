"""A Log that feeds CONFIG_ENTRY commands to a real FSM, as the replicated log would."""

from __future__ import annotations

from typing import Any

import pytest

from lictor.common.commands import MessageType, encode_command
from lictor.server.configentry.entries import decode_entry
from lictor.server.fsm import FSM


class Log:
    def __init__(self) -> None:
        self.fsm = FSM()
        self.index = 0

    def apply(self, msg_type: int, payload: dict[str, Any]) -> Any:
        self.index += 1
        return self.fsm.apply(self.index, encode_command(msg_type, payload, 1000.0))

    def write(self, entry: dict[str, Any], **extra: Any) -> Any:
        return self.apply(MessageType.CONFIG_ENTRY, {"op": "upsert", "entry": decode_entry(entry), **extra})

    def delete(self, kind: str, name: str, **extra: Any) -> Any:
        return self.apply(MessageType.CONFIG_ENTRY, {"op": "delete", "kind": kind, "name": name, **extra})

    @property
    def store(self) -> Any:
        return self.fsm.store


@pytest.fixture
def log() -> Log:
    return Log()
