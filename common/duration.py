"""Go-style durations ("10s", "1m30s", "250ms", "1h") as Consul writes them, to and from seconds."""

from __future__ import annotations

import re

from lictor.common.errors import ValidationError

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(value: str | int | float, *, what: str = "duration", allow_negative: bool = False) -> float:
    """Seconds from a Go duration string. Numbers are taken as seconds (Consul's JSON accepts
    integer nanoseconds in some places; we take plain numbers as seconds, which is what a human
    writing a config means).

    Raises ValidationError naming ``what`` for anything else, for negative values unless allowed,
    and for absurd values (over 10 years).
    """
    if isinstance(value, bool):
        raise ValidationError(f"{what}: expected a duration like \"10s\", got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValidationError(f"{what}: empty duration")
        sign = 1.0
        if text[0] in "+-":
            sign = -1.0 if text[0] == "-" else 1.0
            text = text[1:]
        if text == "0":
            return 0.0
        pos = 0
        total = 0.0
        for m in _PART.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(text) or pos == 0:
            raise ValidationError(
                f"{what}: invalid duration {value!r} (use a number with a unit: ns, us, ms, s, m, h; e.g. \"10s\")"
            )
        seconds = sign * total
    else:
        raise ValidationError(f"{what}: expected a duration like \"10s\", got {type(value).__name__}")
    if seconds < 0 and not allow_negative:
        raise ValidationError(f"{what}: must not be negative, got {value!r}")
    if abs(seconds) > 10 * 365 * 86400:
        raise ValidationError(f"{what}: {value!r} is absurdly long")
    return seconds


def format_duration(seconds: float) -> str:
    """Go's time.Duration.String() shape for common values: "10s", "1m30s", "250ms", "0s"."""
    if seconds == 0:
        return "0s"
    neg = seconds < 0
    seconds = abs(seconds)
    if seconds < 1:
        ms = seconds * 1000
        out = f"{ms:g}ms" if ms >= 1 else f"{seconds * 1e6:g}µs"
    else:
        h, rem = divmod(seconds, 3600)
        m, s = divmod(rem, 60)
        out = ""
        if h:
            out += f"{int(h)}h"
        if h or m:
            out += f"{int(m)}m"
        out += f"{s:g}s"
    return ("-" if neg else "") + out
