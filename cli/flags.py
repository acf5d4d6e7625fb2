"""A small command-line parser with Go's ``flag`` package conventions, as Consul's CLI uses them.

- Flags are single-dash long names: ``-dev``, ``-http-port=8501``, ``-http-port 8501``;
  ``--http-port=8501`` is the same flag.
- Boolean flags take no separate value: ``-dev`` is true, ``-dev=false`` turns it off
  (``-dev false`` would make ``false`` a positional argument, as in Go).
- Repeatable flags collect lists (``-retry-join a -retry-join b``); map flags take ``k=v``.
- Parsing stops at the first argument that is not a flag, at ``-`` alone, or after ``--``;
  the rest are positional arguments.
- ``-h``/``-help``/``--help`` raises :class:`HelpRequested`; a flag not declared raises
  :class:`FlagError` with Go's text ``flag provided but not defined: -x``.

``FlagSet.usage()`` renders the declared flags in sections with their help text, so
``lictor <cmd> -h`` always lists what the parser really accepts.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Flag", "FlagError", "FlagSet", "HelpRequested", "Parsed"]


class FlagError(Exception):
    """The command line is wrong; the message is what Go's flag package would print."""


class HelpRequested(Exception):
    """``-h``/``-help`` was given."""


_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


def _q(text: str) -> str:
    """Go's %q for the error messages."""
    return json.dumps(text)


def _parse_bool(text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(text)


def _parse_int(text: str) -> int:
    text = text.strip()
    try:
        return int(text, 10)
    except ValueError:
        return int(text, 0)  # 0x.., 0o.., 0b.. like Go's base-0 parsing


def _parse_uint(text: str) -> int:
    n = _parse_int(text)
    if n < 0:
        raise ValueError(text)
    return n


@dataclass(frozen=True, slots=True)
class Flag:
    name: str
    kind: str  # "bool", "string", "int", "uint", "list", "map"
    help: str
    default: Any = None
    metavar: str = ""
    section: str = "Command Options"
    map_sep: str = "="  # for kind == "map"


@dataclass(slots=True)
class Parsed:
    values: dict[str, Any]
    args: list[str]
    set: set[str] = field(default_factory=set)  # flag names given explicitly
    order: list[tuple[str, Any]] = field(default_factory=list)  # (name, value) as given, in order

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def given(self, name: str) -> bool:
        return name in self.set


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "string": str,
    "int": _parse_int,
    "uint": _parse_uint,
    "list": str,
}


class FlagSet:
    """Declare flags with :meth:`bool`, :meth:`string`, :meth:`int`, :meth:`list`, :meth:`map`,
    then :meth:`parse`. ``synopsis`` is the first usage line, ``description`` the paragraph after."""

    def __init__(self, synopsis: str, description: str = "") -> None:
        self.synopsis = synopsis
        self.description = description
        self.flags: dict[str, Flag] = {}

    def _add(self, flag: Flag) -> None:
        if flag.name in self.flags:
            raise ValueError(f"flag redefined: {flag.name}")
        self.flags[flag.name] = flag

    def bool(self, name: str, help: str, *, default: bool = False, section: str = "Command Options") -> None:
        self._add(Flag(name, "bool", help, default, section=section))

    def string(self, name: str, help: str, *, default: str = "", metavar: str = "string",
               section: str = "Command Options") -> None:
        self._add(Flag(name, "string", help, default, metavar, section))

    def int(self, name: str, help: str, *, default: int = 0, section: str = "Command Options") -> None:
        self._add(Flag(name, "int", help, default, "int", section))

    def uint(self, name: str, help: str, *, default: int = 0, section: str = "Command Options") -> None:
        self._add(Flag(name, "uint", help, default, "uint", section))

    def list(self, name: str, help: str, *, metavar: str = "string", section: str = "Command Options") -> None:
        self._add(Flag(name, "list", help, None, metavar, section))

    def map(self, name: str, help: str, *, sep: str = "=", section: str = "Command Options") -> None:
        self._add(Flag(name, "map", help, None, f"key{sep}value", section, sep))

    # -- parsing -------------------------------------------------------------------------------

    def parse(self, argv: Sequence[str]) -> Parsed:
        values: dict[str, Any] = {}
        for f in self.flags.values():
            values[f.name] = [] if f.kind == "list" else {} if f.kind == "map" else f.default
        given: set[str] = set()
        order: list[tuple[str, Any]] = []
        args = list(argv)
        i = 0
        while i < len(args):
            arg = args[i]
            if len(arg) < 2 or arg[0] != "-":
                break
            if arg == "--":
                i += 1
                break
            body = arg[2:] if arg.startswith("--") else arg[1:]
            if not body or body[0] in "-=":
                raise FlagError(f"bad flag syntax: {arg}")
            name, has_value, value = body.partition("=")
            flag = self.flags.get(name)
            if flag is None:
                if name in ("h", "help"):
                    raise HelpRequested()
                raise FlagError(f"flag provided but not defined: -{name}")
            i += 1
            if flag.kind == "bool":
                if has_value:
                    try:
                        values[name] = _parse_bool(value)
                    except ValueError:
                        raise FlagError(f"invalid boolean value {_q(value)} for -{name}: parse error") from None
                else:
                    values[name] = True
                given.add(name)
                order.append((name, values[name]))
                continue
            if not has_value:
                if i >= len(args):
                    raise FlagError(f"flag needs an argument: -{name}")
                value = args[i]
                i += 1
            given.add(name)
            if flag.kind == "map":
                key, sep, item = value.partition(flag.map_sep)
                if not sep:
                    raise FlagError(f"invalid value {_q(value)} for flag -{name}: missing {_q(flag.map_sep)} "
                                    f"(use key{flag.map_sep}value)")
                values[name][key] = item
                order.append((name, (key, item)))
                continue
            try:
                converted = _CONVERTERS[flag.kind](value)
            except ValueError:
                raise FlagError(f"invalid value {_q(value)} for flag -{name}: parse error") from None
            if flag.kind == "list":
                values[name].append(converted)
            else:
                values[name] = converted
            order.append((name, converted))
        return Parsed(values, args[i:], given, order)

    # -- help ------------------------------------------------------------------------------------

    def usage(self) -> str:
        out = [f"Usage: {self.synopsis}"]
        if self.description:
            out.append("")
            out.extend("  " + line if line else "" for line in self.description.strip("\n").splitlines())
        sections: dict[str, list[Flag]] = {}
        for f in self.flags.values():
            sections.setdefault(f.section, []).append(f)
        for section, flags in sections.items():
            out.append("")
            out.append(f"{section}:")
            for f in sorted(flags, key=lambda f: f.name):
                head = f"  -{f.name}" if f.kind == "bool" else f"  -{f.name}=<{f.metavar}>"
                out.append("")
                out.append(head)
                text = f.help
                if f.kind == "list":
                    text += " May be given more than once."
                elif f.kind == "map":
                    text += " May be given more than once."
                out.extend(textwrap.wrap(text, width=76, initial_indent="     ", subsequent_indent="     ",
                                       break_on_hyphens=False))
        return "\n".join(out) + "\n"
