"""Regular expressions from users, on RE2: linear time, Consul's syntax and limits.

Every pattern that arrives from outside (``?filter=... matches``, a service-resolver subset
filter, an intention's header or path regex, a user event's node/service/tag filter) is
compiled here and nowhere else. Python's :mod:`re` backtracks: ``(a+)+$`` against 30 ``a`` and a
``!`` takes seconds and blocks the event loop. RE2 (``google-re2``, the engine Consul and Envoy
use) matches in time linear in the text and refuses what it cannot do in linear time
(look-around, back-references) and repeat counts above 1000, exactly as Consul does.

Cost bounds, besides RE2's linear matching:

* a pattern is at most :data:`MAX_PATTERN_LEN` characters;
* the compiled program may use at most :data:`MAX_PROGRAM_MEM` bytes (RE2 refuses a pattern whose
  automaton would be bigger, e.g. ``((a{1000}){1000}){1000}``), so a filter's compile cost and
  per-character match cost are bounded;
* text that cannot be UTF-8 encoded (lone surrogates, which the HTTP boundary refuses anyway)
  never matches instead of raising.

    rx = compile_pattern("^web-(a|b)$")     # RegexError (a ValueError) when refused
    rx.search("web-a")                      # -> True: matches somewhere (unanchored)
    rx.fullmatch("web-a")                   # -> True: matches the whole text
"""

from __future__ import annotations

from typing import Any, Final, Protocol

import re2
from re2 import _re2  # the extension itself: see _Compiled

__all__ = ["MAX_PATTERN_LEN", "MAX_PROGRAM_MEM", "Pattern", "RegexError", "compile_pattern"]

MAX_PATTERN_LEN: Final = 4096
MAX_PROGRAM_MEM: Final = 8 << 20  # RE2's own default budget, named so it is a decision


class RegexError(ValueError):
    """A pattern RE2 refuses; the message says why in user terms."""


class Pattern(Protocol):
    pattern: str

    def search(self, text: str) -> bool: ...
    def fullmatch(self, text: str) -> bool: ...


def _options() -> Any:
    opts = re2.Options()
    opts.max_mem = MAX_PROGRAM_MEM
    opts.log_errors = False  # an invalid user pattern is the user's error, not a log line
    opts.never_capture = True  # we only ever ask "does it match?": no submatch bookkeeping
    return opts


_OPTIONS: Final = _options()
_UNANCHORED: Final = _re2.RE2.Anchor.UNANCHORED
_ANCHOR_BOTH: Final = _re2.RE2.Anchor.ANCHOR_BOTH


class _Compiled:
    """A compiled RE2 program answering only "does it match?", as booleans.

    It calls the extension's ``RE2.Match`` directly: the package's ``re``-style wrapper builds
    a match object and maps byte offsets back to characters on every call, which made a filter
    over many rows about 4x slower for nothing a yes/no question needs.
    """

    __slots__ = ("_rx", "pattern")

    def __init__(self, rx: Any, pattern: str) -> None:
        self._rx = rx
        self.pattern = pattern

    def _match(self, anchor: Any, text: str) -> bool:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: refused at the HTTP boundary; never a match
            return False
        return bool(self._rx.Match(anchor, data, 0, len(data))[0][0] >= 0)

    def search(self, text: str) -> bool:
        """True if the pattern matches anywhere in ``text`` (Go's ``MatchString``)."""
        return self._match(_UNANCHORED, text)

    def fullmatch(self, text: str) -> bool:
        """True if the pattern matches all of ``text`` (Envoy's ``safe_regex`` semantics)."""
        return self._match(_ANCHOR_BOTH, text)


def _explain(pattern: str, err: str) -> str:
    if "invalid perl operator: (?=" in err or "invalid perl operator: (?!" in err or (
            "invalid perl operator: (?<" in err and "(?P<" not in err):
        return "look-around is not supported (RE2 syntax)"
    if "invalid escape sequence: \\" in err and err.rstrip()[-1:].isdigit():
        return "back-references are not supported (RE2 syntax)"
    if "invalid repetition size" in err:
        return f"{err} (RE2 allows repeat counts up to 1000)"
    if "pattern too large" in err:
        return f"{err} (the compiled pattern would exceed {MAX_PROGRAM_MEM} bytes)"
    return err


def compile_pattern(pattern: str) -> Pattern:
    """Compile a user's pattern with RE2; :class:`RegexError` names why one is refused."""
    if not isinstance(pattern, str):
        raise RegexError("a regular expression must be a string")
    if len(pattern) > MAX_PATTERN_LEN:
        raise RegexError(f"regular expression longer than {MAX_PATTERN_LEN} characters")
    try:
        encoded = pattern.encode("utf-8")
    except UnicodeEncodeError:
        raise RegexError("regular expression is not valid Unicode") from None
    rx = _re2.RE2(encoded, _OPTIONS)
    if not rx.ok():
        msg = rx.error()
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        raise RegexError(_explain(pattern, str(msg)))
    return _Compiled(rx, pattern)
