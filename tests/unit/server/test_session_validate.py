"""Issue 18 item 16 on the server side: a session's LockDelay arriving over RPC (from a client
agent, or anyone who can reach port 8300) must be a finite number in [0, 60] seconds."""

from __future__ import annotations

import pytest

from lictor.common.errors import ValidationError
from lictor.server.endpoints.session import _validate


@pytest.mark.parametrize("delay", [float("nan"), float("inf"), -1.0, 61.0, "x", None, [1]])
def test_lock_delay_must_be_finite_and_in_range(delay: object) -> None:
    with pytest.raises(ValidationError, match="LockDelay"):
        _validate({"lock_delay": delay})


@pytest.mark.parametrize("delay", [0, 0.5, 15.0, 60])
def test_valid_lock_delays_pass(delay: float) -> None:
    _validate({"lock_delay": delay})
