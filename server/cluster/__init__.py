"""A server's place in its cluster: formation, the server RPC dispatcher, forwarding, autopilot,
graceful leave. One module each: :mod:`.formation` (finding peers, bootstrap, leaving),
:mod:`.forwarding` (running a call where it must run), :mod:`.autopilot` (the leader's periodic
decisions), :mod:`.dispatch` (the RPC port's handler) and :mod:`.node` (the :class:`Cluster`
that composes them). Every public name is importable from here.

::

    LAN gossip (agent/membership.py: retry_join is a gossip join list, default port 8301)
      | alive servers of our dc, from member tags (role=consul, dc, port, expect, id)
      v
    gossip_servers() + known --Cluster.Hello--> peers    peers --Cluster.Hello/Join/Info--> RPCServer
           |  (every retry_interval; replies carry          |      (port 8300)           |
           |   the peer's view of every server)              |     Raft.Msgs notes -------+--> TCPRaftTransport
           v                                                 |     ENDPOINTS names -------+--> endpoints.call (local)
    known servers --decide()--> start RaftNode               |
        has raft state      -> start as-is (bootstrap ignored)
        -bootstrap / expect 1 -> bootstrap {self}
        a peer knows a leader -> start empty, Cluster.Join at the leader (-> add_nonvoter)
        exactly `expect` stateless servers with the same expect and datacenter
                            -> every one bootstraps with the identical voter set

    Agent.rpc(name, args) -> Cluster.call: stale reads and Status.* answer locally; everything
        else runs on the leader (here, or forwarded whole over RPCClient; retried once when the
        leader changes or cannot be reached, within `forward_hold` seconds)

    leader only, every autopilot_interval (and at once on a gossip change of a server):
        view (configuration, progress, contacts, servers gossip reports as left) ->
        decide_autopilot(view, config) -> AutopilotDecision (promote / remove + a sentence)

Formation protocol (servers find each other through gossip; Hello checks what tags cannot say):

* ``Cluster.Hello`` args and reply are a :class:`ServerInfo` as a map (``node_name``,
  ``node_id``, ``rpc_addr``, ``serf_addr``, ``datacenter``, ``bootstrap_expect``, ``has_state``,
  ``leader``) plus ``servers`` (the sender's known servers, same shape) and, in the reply from a
  leader, ``members`` (node ids of the Raft configuration). Each side records the other. The
  targets are the servers LAN gossip reports alive (their ``port`` tag) and the servers already
  known; ``retry_join`` entries are never dialled on this port (see :func:`probe_rpc_port` for
  the one exception: telling a wrong-port entry apart).
* A datacenter mismatch is refused (``ValidationError``) and logged on both sides. A
  bootstrap_expect mismatch between two stateless servers is logged and the peer is left out of
  the bootstrap count, so nobody bootstraps with a configuration others would not compute.
* ``Cluster.Join`` {node_id, node_name, rpc_addr, datacenter} on the leader adds the server as a
  non-voter (idempotent); autopilot promotes it once it is caught up and stable for
  ``server_stabilization_time``. A follower answers ``NotLeaderError(leader)``.
* A server that is running Raft but is not in the configuration (its own, or the one the
  leader's last Hello reply listed: new, or removed while it was away or when it left) and knows
  a leader sends ``Cluster.Join`` again, as Consul's leader re-adds alive servers it finds in
  Serf.
* ``Cluster.Info`` (read-only, any caller): this server's name, datacenter, RPC and gossip
  addresses. It answers :func:`probe_rpc_port`.

Leaving (Consul's ``Server.Leave`` and the leader's ``handleLeftMember``):

* The leaving server stops formation (it must not ask to be re-added), hands leadership to the
  most caught-up voter if it leads (falling back to removing itself, as Consul's leader does),
  leaves gossip, then waits up to ``leave_drain_time`` until the leader's configuration no
  longer lists it: it keeps acknowledging Raft meanwhile, so the removal can commit even when
  its vote is needed (a 2-server cluster shrinking to 1).
* The leader removes servers that gossip reports as *left* (graceful leave, or an operator's
  force-leave) from the Raft configuration in :func:`decide_autopilot`, so the quorum shrinks.
  A server that merely *failed* is never removed there: that is the dead-server cleanup, with its
  own thresholds.
"""

from lictor.server.cluster.autopilot import (
    Autopilot,
    AutopilotConfig,
    AutopilotDecision,
    AutopilotView,
    ServerHealth,
    ServerView,
    decide_autopilot,
    failure_tolerance,
    server_health,
)
from lictor.server.cluster.dispatch import RPCDispatcher
from lictor.server.cluster.formation import (
    DEFAULT_SERF_LAN_PORT,
    LEAVE_DRAIN_TIME,
    ProbeVerdict,
    RPCProbe,
    ServerInfo,
    bootstrap_voters,
    parse_join_address,
    probe_rpc_port,
)
from lictor.server.cluster.forwarding import LOCAL_ENDPOINTS, Forwarder
from lictor.server.cluster.node import Cluster, ClusterConfig, read_raft_timing_env
from lictor.server.endpoints import is_write

_Dispatcher = RPCDispatcher  # the name tests used before the split

__all__ = [
    "Autopilot",
    "AutopilotConfig",
    "AutopilotDecision",
    "AutopilotView",
    "Cluster",
    "ClusterConfig",
    "DEFAULT_SERF_LAN_PORT",
    "Forwarder",
    "LEAVE_DRAIN_TIME",
    "LOCAL_ENDPOINTS",
    "ProbeVerdict",
    "RPCDispatcher",
    "RPCProbe",
    "ServerHealth",
    "ServerInfo",
    "ServerView",
    "bootstrap_voters",
    "decide_autopilot",
    "failure_tolerance",
    "is_write",
    "parse_join_address",
    "probe_rpc_port",
    "read_raft_timing_env",
    "server_health",
]
