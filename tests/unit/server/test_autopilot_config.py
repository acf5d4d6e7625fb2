"""The autopilot configuration stored through Raft: check-and-set, validation on both sides of the
log, the snapshot round trip, and the configuration autopilot then decides with."""

from __future__ import annotations

import io

import pytest

from lictor.common.commands import MessageType, encode_command
from lictor.common.errors import ValidationError
from lictor.server.autopilot_config import effective_autopilot, parse_autopilot_config, stored_autopilot
from lictor.server.cluster import AutopilotConfig
from lictor.server.fsm import FSM, Rejected


class Log:
    def __init__(self) -> None:
        self.fsm = FSM()
        self.index = 0

    def apply(self, payload: dict[str, object]) -> object:
        self.index += 1
        return self.fsm.apply(self.index, encode_command(MessageType.SYSTEM_METADATA, payload, 1000.0))


def put(log: Log, config: dict[str, object], cas: int | None = None) -> object:
    return log.apply({"op": "autopilot-set", "config": config, "cas": cas})


def test_set_then_check_and_set() -> None:
    log = Log()
    assert stored_autopilot(log.fsm.store) is None
    assert put(log, {"CleanupDeadServers": False, "LastContactThreshold": "300ms"}, cas=5) is False  # none stored
    assert put(log, {"CleanupDeadServers": False, "LastContactThreshold": "300ms"}, cas=0) is True
    row = stored_autopilot(log.fsm.store)
    assert row == {"CleanupDeadServers": False, "LastContactThreshold": "300ms", "CreateIndex": 2, "ModifyIndex": 2}
    assert put(log, {"MinQuorum": 3}, cas=1) is False  # stale
    assert stored_autopilot(log.fsm.store) == row
    assert put(log, {"MinQuorum": 3}, cas=2) is True
    after = stored_autopilot(log.fsm.store)
    assert after is not None and (after["MinQuorum"], after["CreateIndex"], after["ModifyIndex"]) == (3, 2, 4)


def test_the_fsm_refuses_what_the_endpoint_would() -> None:
    out = put(Log(), {"MaxTrailingLogs": -1})
    assert isinstance(out, Rejected) and "MaxTrailingLogs" in str(out.error)


@pytest.mark.parametrize("body", [{"CleanupDeadServers": "yes"}, {"LastContactThreshold": "soon"},
                                  {"MinQuorum": True}, {"MinQuorum": 1.5}, {"RedundancyZoneTag": 3}, []])
def test_bad_bodies_name_the_field(body: object) -> None:
    with pytest.raises(ValidationError):
        parse_autopilot_config(body, current={})


def test_keys_match_case_insensitively_and_durations_stay_as_written() -> None:
    got = parse_autopilot_config({"cleanupdeadservers": False, "serverStabilizationTime": "90s", "Other": 1},
                                 current={"MinQuorum": 1, "ModifyIndex": 9})
    assert got == {"CleanupDeadServers": False, "ServerStabilizationTime": "90s", "MinQuorum": 1}


def test_autopilot_decides_with_the_stored_configuration() -> None:
    log = Log()
    own = AutopilotConfig(cleanup_dead_servers=True, last_contact_threshold=0.2, server_stabilization_time=10.0,
                          dead_server_last_contact_threshold=30.0)
    assert effective_autopilot(log.fsm.store, own) is own
    put(log, {"CleanupDeadServers": False, "LastContactThreshold": "500ms", "ServerStabilizationTime": "2s",
              "MinQuorum": 3, "MaxTrailingLogs": 100})
    eff = effective_autopilot(log.fsm.store, own)
    assert (eff.cleanup_dead_servers, eff.last_contact_threshold, eff.server_stabilization_time, eff.min_quorum,
            eff.max_trailing_logs) == (False, 0.5, 2.0, 3, 100)
    assert eff.dead_server_last_contact_threshold == 30.0  # not an API field: the agent's own


def test_a_snapshot_carries_it() -> None:
    log = Log()
    put(log, {"MinQuorum": 2})
    buf = io.BytesIO()
    log.fsm.snapshot().persist(buf)
    other = FSM()
    other.restore(io.BytesIO(buf.getvalue()))
    assert stored_autopilot(other.store) == stored_autopilot(log.fsm.store)
