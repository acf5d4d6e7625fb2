"""Access logs (proxy-defaults ``AccessLogs``, Consul's shape) as Envoy access loggers. Pure.

``Type`` stdout / stderr / file (``Path``); the format is ``JSONFormat`` (a JSON object whose
string values are Envoy command operators), ``TextFormat`` (one line of operators), or the
default JSON below. The same loggers go on every HTTP connection manager and TCP proxy; unless
``DisableListenerLogs``, each listener also logs the connections no filter chain accepted
(response flag ``NR``), e.g. a plaintext or unknown-SNI connection to the public listener.
"""

from __future__ import annotations

import json
from typing import Any

# importing the generated modules registers their types for "@type" in ParseDict
from envoy.extensions.access_loggers.file.v3 import file_pb2  # noqa: F401
from envoy.extensions.access_loggers.stream.v3 import stream_pb2  # noqa: F401

from lictor.agent.proxycfg.snapshot import AccessLogs

__all__ = ["DEFAULT_JSON_FORMAT", "access_loggers", "listener_access_loggers"]

#: Consul's default fields (names and operators), one JSON object per line.
DEFAULT_JSON_FORMAT: dict[str, str] = {
    "start_time": "%START_TIME%",
    "route_name": "%ROUTE_NAME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "connection_termination_details": "%CONNECTION_TERMINATION_DETAILS%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration": "%DURATION%",
    "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "x_forwarded_for": "%REQ(X-FORWARDED-FOR)%",
    "user_agent": "%REQ(USER-AGENT)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "authority": "%REQ(:AUTHORITY)%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
}

_TYPES = {
    "stdout": ("envoy.access_loggers.stdout",
               "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"),
    "stderr": ("envoy.access_loggers.stderr",
               "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog"),
    "file": ("envoy.access_loggers.file",
             "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"),
}


def _log_format(cfg: AccessLogs) -> dict[str, Any]:
    if cfg.text_format:
        text = cfg.text_format if cfg.text_format.endswith("\n") else cfg.text_format + "\n"
        return {"text_format_source": {"inline_string": text}}
    fmt = json.loads(cfg.json_format) if cfg.json_format else DEFAULT_JSON_FORMAT
    return {"json_format": fmt}


def _logger(cfg: AccessLogs) -> dict[str, Any]:
    name, type_url = _TYPES[cfg.type or "stdout"]
    typed: dict[str, Any] = {"@type": type_url, "log_format": _log_format(cfg)}
    if cfg.type == "file":
        typed["path"] = cfg.path
    return {"name": name, "typed_config": typed}


def access_loggers(cfg: AccessLogs | None) -> list[dict[str, Any]]:
    """The ``access_log`` list of an HTTP connection manager or TCP proxy ([] when disabled)."""
    if cfg is None or not cfg.enabled:
        return []
    return [_logger(cfg)]


def listener_access_loggers(cfg: AccessLogs | None) -> list[dict[str, Any]]:
    """A listener's own ``access_log``: connections that matched no filter chain (flag NR)."""
    if cfg is None or not cfg.enabled or cfg.disable_listener_logs:
        return []
    lg = _logger(cfg)
    lg["filter"] = {"response_flag_filter": {"flags": ["NR"]}}
    return [lg]
