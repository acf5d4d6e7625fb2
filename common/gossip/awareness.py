"""Lifeguard's local health awareness (memberlist ``awareness.go``).

A member that is itself slow (overloaded CPU, lossy NIC) misses acks and would wrongly suspect
healthy peers. Awareness keeps a score in ``[0, max_multiplier - 1]``:

* +1 for a failed probe with no way to tell whose fault it was (no indirect peers),
* +1 per *missed nack*: relays we asked for an indirect probe should answer NACK if the target
  is silent; if even the nacks do not come back, the problem is probably on our side,
* +1 when we must refute a suspicion about ourselves (others could not reach us),
* -1 for every successful direct probe.

Probe intervals and timeouts are multiplied by ``score + 1``, so an unhealthy member probes
less often and waits longer before suspecting anyone.
"""

from __future__ import annotations

__all__ = ["Awareness"]


class Awareness:
    __slots__ = ("max_multiplier", "_score")

    def __init__(self, max_multiplier: int) -> None:
        if max_multiplier < 1:
            raise ValueError("max_multiplier must be at least 1")
        self.max_multiplier = max_multiplier
        self._score = 0

    @property
    def score(self) -> int:
        return self._score

    def apply_delta(self, delta: int) -> int:
        """Move the score by ``delta``, clamped to ``[0, max_multiplier - 1]``; return it."""
        self._score = min(self.max_multiplier - 1, max(0, self._score + delta))
        return self._score

    def scale(self, timeout: float) -> float:
        return timeout * (self._score + 1)
