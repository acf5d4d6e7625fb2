"""Reading one configuration fragment: a JSON or HCL file, a directory of them, or inline text.

Everything here returns plain nested ``dict``/``list``/scalar values with Consul's snake_case keys,
so the rest of the loader never sees a parser's peculiarities. python-hcl2 (v7+) needs taming:

- it keeps the quotes of strings unless ``strip_string_quotes`` is set (we set it);
- it represents every *block* (``ports { ... }``) as a list of dicts tagged ``__is_block__``,
  so ``ports { http = 1 }`` arrives as ``{"ports": [{"http": 1, "__is_block__": True}]}``.

:func:`normalise_hcl` folds a block list into a single dict when the block appears once, and keeps
a list when it appears several times (``service {} service {}``) or when the key is a plural that
Consul always treats as a list (``checks``, ``services``, ``upstreams``...). Attribute objects
(``node_meta = { a = "b" }``) are plain dicts already.

Errors are :class:`~lictor.common.errors.ConfigError` naming the file and, for syntax errors, the
line (``/etc/lictor/a.hcl: line 3, column 7: invalid HCL: unexpected "}"``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

from lictor.common.errors import ConfigError

__all__ = [
    "CONFIG_EXTENSIONS",
    "PLURAL_KEYS",
    "load_file",
    "list_config_dir",
    "normalise_hcl",
    "parse_text",
]

CONFIG_EXTENSIONS = (".hcl", ".json")

# Keys whose value is always a list of objects, even when HCL writes a single block.
PLURAL_KEYS = frozenset(
    {
        "services",
        "checks",
        "upstreams",
        "paths",
        "listeners",
        "bootstrap",
        "watches",
        "config_entries_bootstrap",
    }
)

_BLOCK_MARK = "__is_block__"
_META_KEYS = frozenset({_BLOCK_MARK, "__start_line__", "__end_line__", "__comments__", "__inline_comments__"})


def _is_block_list(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and item.get(_BLOCK_MARK) for item in value)
    )


def normalise_hcl(value: Any, key: str | None = None) -> Any:
    """Turn python-hcl2's output into what the same document would give as JSON (see module doc)."""
    if isinstance(value, dict):
        return {k: normalise_hcl(v, k) for k, v in value.items() if k not in _META_KEYS}
    if isinstance(value, list):
        if _is_block_list(value):
            items = [normalise_hcl(item) for item in value]
            if len(items) == 1 and key not in PLURAL_KEYS:
                return items[0]
            return items
        return [normalise_hcl(item) for item in value]
    return value


def _parse_hcl(text: str, name: str) -> dict[str, Any]:
    import hcl2  # imported lazily: lark's grammar build costs ~100 ms

    options = hcl2.SerializationOptions(
        with_comments=False, strip_string_quotes=True, preserve_heredocs=False
    )
    try:
        data = hcl2.loads(text, serialization_options=options)
    except Exception as exc:  # noqa: BLE001 - lark raises many types; all mean "syntax error"
        line = getattr(exc, "line", None)
        column = getattr(exc, "column", None)
        where = f"line {line}, column {column}: " if isinstance(line, int) and line > 0 else ""
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        detail = re.sub(r"\s+at line \d+,? column \d+\.?$", "", detail)
        raise ConfigError(f"{where}invalid HCL: {detail}", source=name) from exc
    if not isinstance(data, dict):
        raise ConfigError("expected an HCL body at the top level", source=name)
    normalised = normalise_hcl(data)
    assert isinstance(normalised, dict)
    return normalised


def _parse_json(text: str, name: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}", source=name) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"expected a JSON object at the top level, got {type(data).__name__}", source=name)
    return data


def parse_text(text: str, name: str, fmt: str | None = None) -> dict[str, Any]:
    """Parse one fragment. ``fmt`` is "json" or "hcl"; ``None`` guesses: JSON if it starts with "{"."""
    if fmt is None:
        fmt = "json" if text.lstrip().startswith("{") else "hcl"
    if fmt == "json":
        return _parse_json(text, name)
    if fmt == "hcl":
        return _parse_hcl(text, name)
    raise ConfigError(f"unknown config format {fmt!r} (use json or hcl)", source=name)


def load_file(path: str) -> dict[str, Any]:
    """Read and parse one ``.json`` or ``.hcl`` file (the extension decides the format)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in CONFIG_EXTENSIONS:
        raise ConfigError("invalid config format: the file name must end in .hcl or .json", source=path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError as exc:
        raise ConfigError("no such file", source=path) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("not UTF-8 text", source=path) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", source=path) from exc
    return parse_text(text, path, ext[1:])


def list_config_dir(path: str) -> Iterator[tuple[str, bool]]:
    """Yield ``(file path, is_config)`` for a directory's regular files in lexical order.

    Sub-directories are skipped (as Consul does); ``is_config`` is false for files that are not
    ``.json``/``.hcl`` so the caller can warn about them.
    """
    try:
        names = sorted(os.listdir(path))
    except FileNotFoundError as exc:
        raise ConfigError("no such directory", source=path) from exc
    except NotADirectoryError as exc:
        raise ConfigError("not a directory", source=path) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read directory: {exc.strerror or exc}", source=path) from exc
    for name in names:
        full = os.path.join(path, name)
        if os.path.isdir(full):
            continue
        yield full, os.path.splitext(name)[1].lower() in CONFIG_EXTENSIONS
