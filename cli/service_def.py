"""Service definitions as written in config files (snake_case) -> the agent API's JSON (PascalCase).

``definition_to_api`` is what ``lictor services register FILE`` sends to
``PUT /v1/agent/service/register``. Rules:

- keys become PascalCase word by word with Consul's acronyms (``id`` -> ``ID``,
  ``tls_skip_verify`` -> ``TLSSkipVerify``, ``deregister_critical_service_after`` ->
  ``DeregisterCriticalServiceAfter``); keys already starting with a capital letter are kept;
- in a check, ``id``/``check_id`` become ``CheckID`` (the API's AgentServiceCheck field), and
  ``h2ping`` is ``H2PING``;
- nested definitions are converted in context: ``check``/``checks``, ``connect.sidecar_service``
  (a service), ``proxy`` with ``upstreams``, ``expose.paths``, ``mesh_gateway``, ``weights``;
- user data is copied verbatim, keys and all: ``meta``, ``config`` (proxy and upstream
  ``config`` are Envoy options), ``header``; ``tagged_addresses`` keeps its names and converts
  each ``{address, port}``.
"""

from __future__ import annotations

from typing import Any

from lictor.common.config_file import load_file

__all__ = ["definition_to_api", "definitions_from_file", "snake_to_pascal"]

_ACRONYMS = {
    "id": "ID", "ttl": "TTL", "http": "HTTP", "https": "HTTPS", "tcp": "TCP", "udp": "UDP", "grpc": "GRPC",
    "tls": "TLS", "ip": "IP", "dns": "DNS", "url": "URL", "os": "OS", "acl": "ACL", "json": "JSON", "sni": "SNI",
}
_SPECIAL = {"h2ping": "H2PING", "h2ping_use_tls": "H2PingUseTLS"}
_OPAQUE = frozenset({"meta", "config", "header", "node_meta", "envoy_extensions"})


def snake_to_pascal(key: str) -> str:
    if not key or key[0].isupper():
        return key
    if key in _SPECIAL:
        return _SPECIAL[key]
    return "".join(_ACRONYMS.get(word, word[:1].upper() + word[1:]) for word in key.split("_"))


def _convert(value: Any, context: str) -> Any:
    if isinstance(value, list):
        return [_convert(v, context) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        lower = key.lower() if key[:1].isupper() else key
        if context == "check" and key in ("id", "check_id"):
            out["CheckID"] = item
            continue
        name = snake_to_pascal(key)
        if lower in _OPAQUE:
            out[name] = item
        elif lower in ("check", "checks"):
            out[name] = _convert(item, "check")
        elif lower == "sidecar_service":
            out[name] = _convert(item, "service")
        elif lower == "tagged_addresses":
            out[name] = {k: _convert(v, "generic") for k, v in item.items()} if isinstance(item, dict) else item
        elif context == "check" and lower in ("args", "header", "body"):
            out[name] = item
        else:
            out[name] = _convert(item, "service" if context == "service" else "generic")
    return out


def definition_to_api(definition: dict[str, Any]) -> dict[str, Any]:
    """A service definition from a file (``service { ... }`` body) as the register API's JSON."""
    result = _convert(definition, "service")
    assert isinstance(result, dict)
    return result


def definitions_from_file(path: str) -> list[dict[str, Any]]:
    """The service definitions in a file: ``service { }`` (one or several) and ``services [ ]``.
    Raises ConfigError (naming the file) for parse errors or a file that holds none."""
    from lictor.common.errors import ConfigError

    data = load_file(path)
    found: list[dict[str, Any]] = []
    for key in ("service", "services"):
        value = data.get(key)
        if value is None:
            continue
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                where = key if not isinstance(value, list) else f"{key}[{i}]"
                raise ConfigError("expected an object", source=path, path=where)
            found.append(item)
    if not found:
        raise ConfigError("no service definition found (expected a \"service\" block or a \"services\" list)",
                          source=path)
    return found
