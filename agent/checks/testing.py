"""Test kit shipped with the package: a ``CheckNotifier`` that records what it is told."""

from __future__ import annotations

from dataclasses import dataclass

from lictor.common.types import HealthStatus

__all__ = ["CheckUpdate", "RecordingNotifier"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckUpdate:
    status: HealthStatus
    output: str


class RecordingNotifier:
    """Keeps every update, the last state and the update count per check."""

    def __init__(self) -> None:
        self.history: dict[str, list[CheckUpdate]] = {}

    def update_check(self, check_id: str, status: HealthStatus, output: str) -> None:
        self.history.setdefault(check_id, []).append(CheckUpdate(status=status, output=output))

    def updates(self, check_id: str) -> int:
        return len(self.history.get(check_id, []))

    def last(self, check_id: str) -> CheckUpdate | None:
        entries = self.history.get(check_id)
        return entries[-1] if entries else None

    def status(self, check_id: str) -> HealthStatus | None:
        entry = self.last(check_id)
        return entry.status if entry else None

    def output(self, check_id: str) -> str | None:
        entry = self.last(check_id)
        return entry.output if entry else None
