"""Health checks run by the agent: one class per check kind, reporting to a narrow notifier.

::

    check definition --(agent factory)--> HTTPCheck / TCPCheck / UDPCheck / GRPCCheck /
                                          H2PingCheck / ScriptCheck          (IntervalCheck)
                                          TTLCheck / AliasCheck              (Check)

    IntervalCheck:  scheduler.run_periodic  (stagger from rng, grid-aligned on the Clock,
                    |                         never overlapping, missed slots skipped)
                    v
                    check_once()  = run_once() under the deadline -> (status, output)
                    v
                    StatusHandler.update()  (success_before_passing / failures_before_*)
                    v
    TTLCheck.set_status() / expiry ------>  CheckNotifier.update_check(check_id, status, output)
    AliasCheck (blocking source) -------->  (the agent's local state; idempotent, non-blocking)

Modules: ``base`` (notifier, handler, lifecycle), ``scheduler`` (periodic runner), one module
per kind, ``tls`` (client contexts), ``testing`` (``RecordingNotifier`` for tests).

Invariants:

* Each check owns at most one task, created by ``start()`` on the running loop and cancelled and
  awaited by ``stop()`` (idempotent; also releases channels and kills running scripts).
* ``run_once()`` returns ``(HealthStatus, output)``; expected failures are results, not
  exceptions. Output is bounded by ``output_max_size`` and marked when truncated.
* Time comes from an injected ``lictor.common.clock.Clock``, randomness from an injected
  ``random.Random``. I/O deadlines use the loop's real clock.
* Whether a kind of check is allowed (script checks) and Consul's 1 s minimum interval are
  the agent's decisions; constructors only validate what they need to run.
"""

from __future__ import annotations

from .alias import AliasCheck, AliasSource, aggregate_alias
from .base import (
    DEFAULT_OUTPUT_MAX_SIZE,
    DEFAULT_TIMEOUT,
    MIN_INTERVAL,
    Check,
    CheckNotifier,
    IntervalCheck,
    StatusHandler,
)
from .grpc import GRPCCheck
from .h2ping import H2PingCheck
from .http import CheckHTTPClient, HTTPCheck
from .script import DEFAULT_SCRIPT_TIMEOUT, ScriptCheck
from .tcp import TCPCheck
from .ttl import TTLCheck
from .udp import UDPCheck

__all__ = [
    "DEFAULT_OUTPUT_MAX_SIZE",
    "DEFAULT_SCRIPT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "MIN_INTERVAL",
    "AliasCheck",
    "AliasSource",
    "Check",
    "CheckHTTPClient",
    "CheckNotifier",
    "GRPCCheck",
    "H2PingCheck",
    "HTTPCheck",
    "IntervalCheck",
    "ScriptCheck",
    "StatusHandler",
    "TCPCheck",
    "TTLCheck",
    "UDPCheck",
    "aggregate_alias",
]
