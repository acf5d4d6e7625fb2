"""Decoding Consul's request bodies as Go does: field names match case-insensitively.

:func:`fields` lowers the structural keys of one JSON object (never the keys of user maps such as
Meta or TaggedAddresses, which callers take as values) and checks value types with messages that
name the field.
"""

from __future__ import annotations

from typing import Any

from lictor.common.errors import ValidationError

__all__ = ["INT64_MAX", "INT64_MIN", "UINT64_MAX", "Fields", "fields"]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1


class Fields:
    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ValidationError(f"Request decode failed: {where or 'body'} must be a JSON object")
        self._d = {str(k).lower().replace("_", ""): v for k, v in data.items()}
        self.where = where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def has(self, key: str) -> bool:
        return key.lower() in self._d and self._d[key.lower()] is not None

    def raw(self, key: str, default: Any = None) -> Any:
        v = self._d.get(key.lower())
        return default if v is None else v

    def str(self, key: str, default: str = "") -> str:
        v = self._d.get(key.lower())
        if v is None:
            return default
        if not isinstance(v, str):
            raise ValidationError(f"Request decode failed: {self._name(key)}: expected a string, got {type(v).__name__}")
        return v

    def int(self, key: str, default: int = 0, *, lo: int = INT64_MIN, hi: int = INT64_MAX) -> int:
        """An integer within ``[lo, hi]`` (default: Go's int64, the type of Consul's ints)."""
        v = self._d.get(key.lower())
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not v.is_integer()):
            raise ValidationError(f"Request decode failed: {self._name(key)}: expected an integer, got {v!r}")
        n = int(v)
        if not lo <= n <= hi:
            raise ValidationError(f"Request decode failed: {self._name(key)}: {n} is out of range [{lo}, {hi}]")
        return n

    def uint(self, key: str, default: int = 0) -> int:
        """An unsigned integer within Go's uint64 (KV Flags, indexes)."""
        return self.int(key, default, lo=0, hi=UINT64_MAX)

    def bool(self, key: str, default: bool = False) -> bool:
        v = self._d.get(key.lower())
        if v is None:
            return default
        if not isinstance(v, bool):
            raise ValidationError(f"Request decode failed: {self._name(key)}: expected true or false, got {v!r}")
        return v

    def str_list(self, key: str) -> list[str]:
        v = self._d.get(key.lower())
        if v is None:
            return []
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ValidationError(f"Request decode failed: {self._name(key)}: expected a list of strings")
        return v

    def str_map(self, key: str) -> dict[str, str]:
        v = self._d.get(key.lower())
        if v is None:
            return {}
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            raise ValidationError(f"Request decode failed: {self._name(key)}: expected an object of strings")
        return dict(v)

    def obj(self, key: str) -> Fields | None:
        v = self._d.get(key.lower())
        if v is None:
            return None
        return Fields(v, self._name(key))

    def dict(self, key: str) -> dict[str, Any]:
        v = self._d.get(key.lower())
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise ValidationError(f"Request decode failed: {self._name(key)}: expected an object")
        return dict(v)


def fields(data: Any, where: str = "") -> Fields:
    return Fields(data, where)
