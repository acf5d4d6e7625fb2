"""Lifeguard's dynamic suspicion timeout (memberlist ``suspicion.go``), as pure timer maths.

When a member is first suspected we do not know how long ago it really failed, so the timeout
starts at ``max_timeout``. Each *independent* confirmation (a suspect message about the same
member from a member we have not heard it from yet) is evidence the failure is real, and the
timeout shrinks on a logarithmic curve until, after ``k`` confirmations, it reaches
``min_timeout``::

    timeout(c) = max(min, max - (max - min) * log(c + 1) / log(k + 1))

With ``k < 1`` (too few members to expect confirmations) the timeout is ``min`` at once.
Nothing here reads a clock: the caller passes ``start`` and compares ``deadline()`` with its own
``now``.
"""

from __future__ import annotations

import math

__all__ = ["Suspicion", "suspicion_timeout", "remaining_timeout"]


def suspicion_timeout(suspicion_mult: float, n: int, probe_interval: float) -> float:
    """The *minimum* suspicion timeout: ``mult * max(1, log10(n)) * probe_interval``.

    It grows with the cluster size because gossip takes O(log n) rounds to reach everyone,
    and the suspected member must have time to hear about it and refute.
    """
    node_scale = max(1.0, math.log10(max(1.0, float(n))))
    return suspicion_mult * node_scale * probe_interval


def remaining_timeout(k: int, confirmations: int, min_timeout: float, max_timeout: float) -> float:
    """Total timeout (from the start of the suspicion) after ``confirmations`` of ``k``."""
    if k < 1:
        return min_timeout
    frac = math.log(confirmations + 1.0) / math.log(k + 1.0)
    raw = max_timeout - frac * (max_timeout - min_timeout)
    return max(min_timeout, raw)


class Suspicion:
    """One suspected member's timer state.

    ``k`` is how many independent confirmations are expected; the member that raised the
    suspicion (``sender``) never counts as one, nor does anybody twice.
    """

    __slots__ = ("start", "k", "min_timeout", "max_timeout", "_confirmed", "_count", "_verdict")

    def __init__(self, *, sender: str, k: int, min_timeout: float, max_timeout: float,
                 start: float) -> None:
        if min_timeout <= 0 or max_timeout < min_timeout:
            raise ValueError("need 0 < min_timeout <= max_timeout")
        self.start = start
        self.k = k
        self.min_timeout = min_timeout
        self.max_timeout = max_timeout if k >= 1 else min_timeout
        self._confirmed = {sender}
        self._count = 0
        self._verdict = False

    @property
    def confirmations(self) -> int:
        return self._count

    def confirm(self, sender: str) -> bool:
        """Record a confirmation; True if it was new and counted (then re-gossip it)."""
        if self._count >= self.k or sender in self._confirmed:
            return False
        self._confirmed.add(sender)
        self._count += 1
        return True

    def verdict_heard(self) -> None:
        """Another member's timer already ran out (we heard its Dead): the failure is as
        confirmed as it gets, so ours ends ``min_timeout`` after it started, not later. It
        does not end at once: ``min_timeout`` is the time the member is owed to refute."""
        self._verdict = True

    def timeout(self) -> float:
        if self._verdict:
            return self.min_timeout
        return remaining_timeout(self.k, self._count, self.min_timeout, self.max_timeout)

    def deadline(self) -> float:
        return self.start + self.timeout()
