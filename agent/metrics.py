"""Agent metrics: a Prometheus registry of gauges read at scrape time, in Consul's names where they
exist, served as Prometheus text or as Consul's JSON shape (/v1/agent/metrics)."""

from __future__ import annotations

import datetime as dt
import os
import resource
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from lictor.agent.agent import Agent

__all__ = ["AgentMetrics"]


def _rss_bytes() -> float:
    try:
        with open("/proc/self/statm") as f:
            return float(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


class _Collector:
    def __init__(self, gauges: Callable[[], dict[str, float]]) -> None:
        self._gauges = gauges

    def collect(self) -> Any:
        for name, value in self._gauges().items():
            g = GaugeMetricFamily(name.replace(".", "_"), name)
            g.add_metric([], value)
            yield g


class AgentMetrics:
    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self.gauges))

    def gauges(self) -> dict[str, float]:
        a = self._agent
        g: dict[str, float] = {
            "lictor.runtime.rss_bytes": _rss_bytes(),
            "lictor.runtime.cpu_seconds": sum(os.times()[:2]),
            "lictor.agent.services": float(len(a.local.live_services())),
            "lictor.agent.checks": float(len(a.local.live_checks())),
            "lictor.agent.checks_running": float(len(a.checks)),
            "lictor.agent.uptime_seconds": dt.datetime.now().timestamp() - a.started,
        }
        dns_server = getattr(a, "dns", None)
        if dns_server is not None:  # DNS interface counters (issue 15; lictor.agent.dns.server)
            g.update({f"lictor.dns.{k}": float(v) for k, v in dns_server.stats.items()})
            g["lictor.dns.cache_entries"] = float(len(dns_server.cache))
            g["lictor.dns.cache_rpcs"] = float(dns_server.cache.rpcs)
        if a.server is not None:
            st = a.server.store
            g.update({
                "lictor.state.nodes": float(len(st.nodes)),
                "lictor.state.services": float(len(st.services)),
                "lictor.state.kv_entries": float(len(st.kvs)),
                "lictor.state.tombstones": float(len(st.tombstones)),
                "lictor.state.sessions": float(len(st.sessions)),
                "lictor.raft.applied_index": float(a.server.fsm.last_applied),
                "lictor.session_ttl.active": float(a.server.session_timers.active),
            })
        return g

    def prometheus_text(self) -> bytes:
        return generate_latest(self.registry)

    def consul_json(self) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")
        return {"Timestamp": now,
                "Gauges": [{"Name": k, "Value": v, "Labels": {}} for k, v in sorted(self.gauges().items())],
                "Points": [], "Counters": [], "Samples": []}
