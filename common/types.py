"""Names that carry meaning: IDs as NewTypes, and the shared enumerations."""

from __future__ import annotations

import enum
from typing import NewType

__all__ = [
    "CheckID",
    "HealthStatus",
    "NodeAddress",
    "NodeID",
    "RaftIndex",
    "ServiceID",
    "ServiceKind",
    "Term",
    "worst_status",
]

NodeID = NewType("NodeID", str)
NodeAddress = NewType("NodeAddress", str)
ServiceID = NewType("ServiceID", str)
CheckID = NewType("CheckID", str)
RaftIndex = NewType("RaftIndex", int)
Term = NewType("Term", int)


class HealthStatus(str, enum.Enum):
    """A check's status, as Consul spells it on the wire."""

    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"
    MAINTENANCE = "maintenance"

    def __str__(self) -> str:
        return self.value


# Severity order used to aggregate several checks into one status (worst wins).
_SEVERITY = {
    HealthStatus.PASSING: 0,
    HealthStatus.WARNING: 1,
    HealthStatus.CRITICAL: 2,
    HealthStatus.MAINTENANCE: 3,
}


def worst_status(statuses: list[str]) -> HealthStatus:
    """The aggregate of several check statuses: maintenance > critical > warning > passing."""
    worst = HealthStatus.PASSING
    for s in statuses:
        st = HealthStatus(s)
        if _SEVERITY[st] > _SEVERITY[worst]:
            worst = st
    return worst


class ServiceKind(str, enum.Enum):
    """Consul's service kinds; the empty string is a typical (non-proxy) service."""

    TYPICAL = ""
    CONNECT_PROXY = "connect-proxy"
    MESH_GATEWAY = "mesh-gateway"
    TERMINATING_GATEWAY = "terminating-gateway"
    INGRESS_GATEWAY = "ingress-gateway"
    API_GATEWAY = "api-gateway"
