"""Consul's ``?filter=`` expression language (HashiCorp go-bexpr), over JSON-shaped values.

A filter is parsed once by :func:`compile_filter` into a tree of small closures and then run
against plain Python values shaped like our HTTP responses (dicts with Consul's PascalCase keys,
lists, ``str``, ``int``, ``float``, ``bool``, ``None``)::

    f = compile_filter('Service.Tags contains "primary" and Meta.env != qa')
    f.matches(entry)                      # -> bool
    apply_filter(expr, rows)              # list endpoints (/v1/catalog/service/:s, /v1/health/...)
    filter_map(expr, services_by_id)      # map endpoints (/v1/agent/services, /v1/agent/checks)

Grammar (EBNF; whitespace is allowed between any two tokens and ignored outside strings)::

    filter      = or_expr ;
    or_expr     = and_expr , { "or" , and_expr } ;
    and_expr    = not_expr , { "and" , not_expr } ;
    not_expr    = "not" , not_expr | primary ;
    primary     = "(" , or_expr , ")" | match ;
    match       = selector , ( "==" | "!=" ) , value
                | selector , [ "not" ] , ( "contains" | "matches" ) , value
                | selector , "is" , [ "not" ] , "empty"
                | value , [ "not" ] , "in" , selector ;
    selector    = ident , { "." , ident | "." , digits | "[" , string , "]" } ;
    value       = string | number | bare ;
    string      = '"' , { char | escape } , '"'        (* Go escapes: \\n \\t \\" \\xHH \\uHHHH ... *)
                | "`" , { any char but "`" } , "`" ;    (* raw: no escapes *)
    number      = [ "-" ] , ( "0" | nonzero , { digit } ) , [ "." , digit , { digit } ] ;
                                                        (* must be followed by space, ")" or end *)
    bare        = letter , { letter | digit | "_" | "." | "-" | "/" } ;
    ident       = letter , { letter | digit | "_" } ;

Keywords (``and or not in contains matches is empty``) are whole words. ``not`` binds tighter
than ``and``, which binds tighter than ``or``; parentheses override. ``contains`` is ``in`` with
its operands swapped (go-bexpr parses both to the same operator).

Semantics (decisions, following Consul's filtering docs and go-bexpr):

* **Values are text until compared.** A literal keeps its source text (``80``, ``"80"``, ``true``
  and ``` `true` ``` differ only in quoting) and is read as the type of the value it meets, as
  bexpr coerces per field kind: a ``str`` field compares the text; a ``bool`` field reads it
  like Go's ``strconv.ParseBool`` (``1 t T TRUE true True`` / ``0 f F FALSE false False``); an
  ``int``/``float`` field reads it as a number (Go ``ParseInt`` base 0 syntax such as ``0x1f``,
  else a decimal float, compared numerically so ``1 == 1.0``). A literal that cannot be read as
  the field's type is simply not equal to it (``==`` false, ``!=`` true). With a schema (below)
  such a literal is a compile-time :class:`FilterError` instead, as Consul's 400.
* **Missing or null is absent.** A selector that finds no key (or ``null``, or runs into a scalar)
  uses go-bexpr's "not present" disposition: ``==``, ``in``/``contains``, ``matches`` and
  ``is not empty`` are false; ``!=``, ``not in``/``not contains``, ``not matches`` and
  ``is empty`` are true.
* **Lists of objects are "any".** When a selector continues through a list (``Checks.Status``
  on a health entry, ``Service.Proxy.Upstreams.DestinationName``), the whole match - operator
  *including* its negation - is evaluated for each element and the result is true if *any*
  element matches (go-bexpr's reflective evaluator used by Consul's documented
  ``Checks.<field>`` selectors). So ``Checks.Status == passing`` means "some check passes",
  ``Checks.Status != passing`` means "some check is not passing", and "all checks pass" is
  ``not Checks.Status != passing``. An empty list matches nothing. ``"passing" in Checks.Status``
  is per element too, i.e. a substring test on each ``Status`` (bexpr's ``in`` on a string).
  A purely numeric segment (``Checks.0.Status``) indexes the list instead.
* **``in`` / ``contains``** test membership in a list (element-wise equality with the coercion
  above), key membership in a map, and substring in a string; anything else is no match.
* **``is empty``** is true for ``""``, ``[]``, ``{}``, ``null`` and a missing key.
* **``matches``** is an unanchored regular-expression search on a string (Go's ``Match``);
  patterns are compiled with RE2 (:mod:`lictor.common.regex`) at compile time, as Consul's are:
  linear-time matching, no look-around or back-references, repeat counts up to 1000. A hostile
  pattern cannot stall the agent. Non-strings never match.
* **Schemas.** Without a schema every selector is accepted and missing data is absent, as above.
  With ``schema=`` (see :mod:`lictor.common.filter_schemas`) the selector must name a known
  field (``Selector "Foo" is not valid``), the operator must suit the field's kind (Consul's
  "Supported Operations" tables) and the literal must coerce to the field's type; all of these
  are a :class:`FilterError` (HTTP 400) raised by :func:`compile_filter`.
* **Errors** carry ``position`` (0-based offset) and read
  ``filter: LINE:COL (OFFSET): message``, the same shape as go-bexpr's parser errors.

Not supported: bexpr's JSON-pointer selectors (``"/Service/Tags"``) and inline list selectors,
which Consul's docs do not describe; ``<``/``>`` comparisons (not in Consul's language).
Cost is bounded: nesting depth (:data:`_MAX_DEPTH`), expression length (:data:`MAX_FILTER_LEN`)
and, per regular expression, RE2's linear matching and program-size budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, TypeAlias, TypeVar

from lictor.common.errors import FilterError
from lictor.common.regex import Pattern, RegexError, compile_pattern

__all__ = [
    "ANY",
    "Filter",
    "FilterError",
    "ListOf",
    "MAX_FILTER_LEN",
    "MapOf",
    "Schema",
    "apply_filter",
    "compile_filter",
    "filter_map",
    "obj",
]

# --------------------------------------------------------------------------------------------
# Schemas: a nested description of valid selectors, used only at compile time.


@dataclass(frozen=True, slots=True)
class ListOf:
    """A JSON array whose elements have schema ``item`` (scalars, or objects to select through)."""

    item: Schema


@dataclass(frozen=True, slots=True)
class MapOf:
    """A JSON object with arbitrary keys (``Meta``), every value having schema ``value``."""

    value: Schema


class _AnySchema:
    """Anything: selectors below this point are not validated (``Definition``, ``Config``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _AnySchema()

#: A leaf type (``str``, ``int``, ``float``, ``bool``), an object ``{field: Schema}``,
#: ``ListOf``, ``MapOf`` or ``ANY``.
Schema: TypeAlias = "type | Mapping[str, Schema] | ListOf | MapOf | _AnySchema"

_LEAF_TYPES: Final = (str, int, float, bool)


def obj(**fields: Schema) -> Mapping[str, Schema]:
    """An object schema with exactly these fields (read-only; extend with ``obj(**base, X=str)``)."""
    return MappingProxyType(dict(fields))


# --------------------------------------------------------------------------------------------
# Operators


_EQ: Final = "=="
_NE: Final = "!="
_IN: Final = "in"
_NOT_IN: Final = "not in"
_EMPTY: Final = "is empty"
_NOT_EMPTY: Final = "is not empty"
_MATCHES: Final = "matches"
_NOT_MATCHES: Final = "not matches"
# Syntax only: "X contains v" is "v in X" with the operands swapped.
_CONTAINS: Final = "contains"
_NOT_CONTAINS: Final = "not contains"

#: go-bexpr's NotPresentDisposition: the result when the selector finds nothing.
_NOT_PRESENT: Final[Mapping[str, bool]] = {
    _EQ: False,
    _NE: True,
    _IN: False,
    _NOT_IN: True,
    _EMPTY: True,
    _NOT_EMPTY: False,
    _MATCHES: False,
    _NOT_MATCHES: True,
}

_Pred: TypeAlias = Callable[[Any], bool]

_GO_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_GO_OCTAL = re.compile(r"[+-]?0[0-7]+")


def _coerce_bool(raw: str) -> bool | None:
    if raw in _GO_TRUE:
        return True
    if raw in _GO_FALSE:
        return False
    return None


def _coerce_int(raw: str) -> int | None:
    if not raw or raw != raw.strip():
        return None
    try:
        return int(raw, 0)
    except ValueError:
        pass
    if _GO_OCTAL.fullmatch(raw):  # Go's base-0 ParseInt reads "017" as octal
        return int(raw, 8)
    return None


def _coerce_number(raw: str) -> int | float | None:
    as_int = _coerce_int(raw)
    if as_int is not None:
        return as_int
    if not raw or raw != raw.strip():
        return None
    try:
        return float(raw)
    except ValueError:
        return None


class _Literal:
    """A value's source text plus its readings as bool and number, computed once."""

    __slots__ = ("boolean", "number", "raw")

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.boolean = _coerce_bool(raw)
        self.number = _coerce_number(raw)

    def equals(self, value: Any) -> bool:
        if isinstance(value, str):
            return value == self.raw
        if isinstance(value, bool):  # before int: bool is an int subclass
            return self.boolean is not None and value is self.boolean
        if isinstance(value, (int, float)):
            return self.number is not None and value == self.number
        return False


def _leaf_predicate(op: str, literal: _Literal | None, regex: Pattern | None) -> _Pred:
    """The test applied to the (non-null) value the selector found."""
    if op in (_EQ, _NE):
        assert literal is not None
        equals = literal.equals
        if op == _EQ:
            return equals
        return lambda v: not equals(v)
    if op in (_IN, _NOT_IN):
        assert literal is not None
        lit = literal

        def contains(v: Any) -> bool:
            if isinstance(v, str):
                return lit.raw in v
            if isinstance(v, dict):
                return lit.raw in v
            if isinstance(v, list):
                return any(lit.equals(item) for item in v)
            return False

        if op == _IN:
            return contains
        return lambda v: not contains(v)
    if op in (_EMPTY, _NOT_EMPTY):

        def empty(v: Any) -> bool:
            return isinstance(v, (str, list, dict)) and len(v) == 0

        if op == _EMPTY:
            return empty
        return lambda v: not empty(v)
    assert regex is not None
    search = regex.search

    def matches(v: Any) -> bool:
        return isinstance(v, str) and search(v)

    if op == _MATCHES:
        return matches
    return lambda v: not matches(v)


def _selector_predicate(path: tuple[str, ...], leaf: _Pred, absent: bool) -> _Pred:
    """Walk ``path`` from the document, fanning out over lists ("any"), then apply ``leaf``."""
    n = len(path)

    def walk(value: Any, i: int) -> bool:
        while i < n:
            if isinstance(value, dict):
                value = value.get(path[i])
                if value is None:
                    return absent
            elif isinstance(value, list):
                seg = path[i]
                if seg.isdigit():
                    idx = int(seg)
                    if idx >= len(value):
                        return absent
                    value = value[idx]
                    if value is None:
                        return absent
                else:
                    for item in value:
                        if walk(item, i):
                            return True
                    return False
            else:
                return absent
            i += 1
        if value is None:
            return absent
        return leaf(value)

    if n == 1:  # the common case: one key of the document
        key = path[0]

        def top(doc: Any) -> bool:
            if isinstance(doc, dict):
                value = doc.get(key)
                return absent if value is None else leaf(value)
            return walk(doc, 0)

        return top
    return lambda doc: walk(doc, 0)


# --------------------------------------------------------------------------------------------
# The compiled filter


@dataclass(frozen=True, slots=True, eq=False)
class Filter:
    """A compiled filter expression. Cheap to keep and share; evaluation never re-parses."""

    expression: str
    _predicate: _Pred

    def matches(self, item: Any) -> bool:
        """True if ``item`` (one JSON-shaped result item) satisfies the expression."""
        return self._predicate(item)

    def apply(self, items: Iterable[Any]) -> list[Any]:
        """The items that match, in order."""
        pred = self._predicate
        return [item for item in items if pred(item)]

    def apply_map(self, mapping: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of ``mapping`` whose *values* match, in order."""
        pred = self._predicate
        return {key: value for key, value in mapping.items() if pred(value)}


_T = TypeVar("_T")


def compile_filter(expression: str, *, schema: Schema | None = None) -> Filter:
    """Parse ``expression`` once; validate selectors, operators and values against ``schema``.

    Raises :class:`FilterError` (``.position`` = 0-based offset) for a syntax error, an invalid
    regular expression, or (with a schema) an unknown selector, an operator the field does not
    support, or a value that does not coerce to the field's type.
    """
    if not isinstance(expression, str):
        raise FilterError("filter: expression must be a string", position=0)
    if len(expression) > MAX_FILTER_LEN:
        raise FilterError(f"filter: expression longer than {MAX_FILTER_LEN} characters", position=MAX_FILTER_LEN)
    parser = _Parser(expression, schema)
    return Filter(expression=expression, _predicate=parser.parse())


def _resolve(expression: str | Filter | None, schema: Schema | None) -> Filter | None:
    if expression is None or isinstance(expression, Filter):
        return expression
    if not expression.strip():
        return None
    return compile_filter(expression, schema=schema)


def apply_filter(
    expression: str | Filter | None, items: Iterable[_T], *, schema: Schema | None = None
) -> list[_T]:
    """The items matching ``expression``; ``None`` or a blank string keeps them all (no filter)."""
    flt = _resolve(expression, schema)
    if flt is None:
        return list(items)
    return flt.apply(items)


def filter_map(
    expression: str | Filter | None, mapping: Mapping[str, _T], *, schema: Schema | None = None
) -> dict[str, _T]:
    """Keep the entries whose values match (``/v1/agent/services`` is ``{id: service}``)."""
    flt = _resolve(expression, schema)
    if flt is None:
        return dict(mapping)
    return flt.apply_map(mapping)


# --------------------------------------------------------------------------------------------
# Parser: scannerless recursive descent over the source text, so every error has an offset.

_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_DIGITS = re.compile(r"[0-9]+")
_BARE = re.compile(r"[A-Za-z][A-Za-z0-9_./-]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_WS = re.compile(r"[ \t\r\n]*")
_WORD_CHAR = re.compile(r"[A-Za-z0-9_]")
MAX_FILTER_LEN: Final = 16384  # characters; with the depth limit, bounds compile and per-row cost
_MAX_DEPTH: Final = 100  # nesting of "(" and "not"; deeper input is refused, not a RecursionError
_EXPECT_OPERATOR: Final = '"!=", "==", "contains", "in", "is", "matches", "not"'
_SIMPLE_ESCAPES: Final[Mapping[str, str]] = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
}


@dataclass(frozen=True, slots=True)
class _Selector:
    path: tuple[str, ...]
    text: str
    pos: int


class _Parser:
    def __init__(self, text: str, schema: Schema | None) -> None:
        self.text = text
        self.pos = 0
        self.schema = schema
        self.depth = 0

    # -- helpers ---------------------------------------------------------------------------

    def error(self, message: str, pos: int | None = None) -> FilterError:
        at = self.pos if pos is None else pos
        line = self.text.count("\n", 0, at) + 1
        col = at - (self.text.rfind("\n", 0, at) + 1) + 1
        return FilterError(f"filter: {line}:{col} ({at}): {message}", position=at)

    def found(self) -> str:
        if self.pos >= len(self.text):
            return "end of input"
        return repr(self.text[self.pos : self.pos + 12])

    def skip_ws(self) -> None:
        m = _WS.match(self.text, self.pos)
        assert m is not None
        self.pos = m.end()

    def at_eof(self) -> bool:
        return self.pos >= len(self.text)

    def keyword_at(self, word: str, pos: int) -> bool:
        end = pos + len(word)
        if not self.text.startswith(word, pos):
            return False
        return end >= len(self.text) or _WORD_CHAR.match(self.text, end) is None

    def accept_keyword(self, word: str) -> bool:
        """Consume ``word`` (and the whitespace before it) if it is next, as a whole word."""
        save = self.pos
        self.skip_ws()
        if self.keyword_at(word, self.pos):
            self.pos += len(word)
            return True
        self.pos = save
        return False

    # -- expressions ---------------------------------------------------------------------------

    def parse(self) -> _Pred:
        self.skip_ws()
        if self.at_eof():
            raise self.error("empty filter expression")
        pred = self.or_expr()
        self.skip_ws()
        if not self.at_eof():
            if self.text[self.pos] == ")":
                raise self.error('unmatched ")"')
            raise self.error(f'no match found, expected: "and", "or" or end of input, found {self.found()}')
        return pred

    def or_expr(self) -> _Pred:
        terms = [self.and_expr()]
        while self.accept_keyword("or"):
            terms.append(self.and_expr())
        if len(terms) == 1:
            return terms[0]
        parts = tuple(terms)
        return lambda doc: any(p(doc) for p in parts)

    def and_expr(self) -> _Pred:
        terms = [self.not_expr()]
        while self.accept_keyword("and"):
            terms.append(self.not_expr())
        if len(terms) == 1:
            return terms[0]
        if len(terms) == 2:
            a, b = terms
            return lambda doc: a(doc) and b(doc)
        parts = tuple(terms)
        return lambda doc: all(p(doc) for p in parts)

    def nest(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.error(f"expression nested too deeply (more than {_MAX_DEPTH} levels)")

    def not_expr(self) -> _Pred:
        self.skip_ws()
        if self.keyword_at("not", self.pos):
            self.nest()
            self.pos += 3
            inner = self.not_expr()
            self.depth -= 1
            return lambda doc: not inner(doc)
        return self.primary()

    def primary(self) -> _Pred:
        self.skip_ws()
        if self.at_eof():
            raise self.error("no match found, expected: \"(\", \"not\", a selector or a value")
        if self.text[self.pos] == "(":
            open_at = self.pos
            self.nest()
            self.pos += 1
            pred = self.or_expr()
            self.depth -= 1
            self.skip_ws()
            if self.at_eof() or self.text[self.pos] != ")":
                if self.at_eof():
                    raise self.error(f'unmatched parenthesis: "(" at offset {open_at} is not closed')
                raise self.error(f'no match found, expected: ")", "and", "or", found {self.found()}')
            self.pos += 1
            return pred
        return self.match_expr()

    # -- match expressions --------------------------------------------------------------------

    def match_expr(self) -> _Pred:
        start = self.pos
        ch = self.text[start]
        if ch in "\"`" or ch == "-" or ch.isdigit():
            value = self.value()
            return self.value_in_selector(value, start)
        if _IDENT.match(self.text, start) is None:
            raise self.error(f"no match found, expected: \"(\", \"not\", a selector or a value, found {self.found()}")
        selector = self.selector()
        op = self.operator()
        if op is None:
            # Perhaps a bare value such as web-1 on the left of "in".
            self.pos = start
            bare = _BARE.match(self.text, start)
            assert bare is not None
            self.pos = bare.end()
            op = self.operator()
            if op in (_IN, _NOT_IN):
                return self.finish_value_in(_Literal(bare.group()), op, start)
            self.pos = start + len(selector.text)
            self.skip_ws()
            raise self.error(f"no match found, expected: {_EXPECT_OPERATOR}, found {self.found()}")
        if op in (_IN, _NOT_IN):
            # The selector-shaped word was the value: `web in Service.Tags`.
            return self.finish_value_in(_Literal(selector.text), op, start)
        if op in (_EMPTY, _NOT_EMPTY):
            return self.build(selector, op, None, start)
        if op == _CONTAINS:
            op = _IN
        elif op == _NOT_CONTAINS:
            op = _NOT_IN
        self.skip_ws()
        value_at = self.pos
        literal = self.value()
        return self.build(selector, op, literal, value_at)

    def value_in_selector(self, value: _Literal, start: int) -> _Pred:
        self.skip_ws()
        op_at = self.pos
        op = self.operator()
        if op not in (_IN, _NOT_IN):
            self.pos = op_at
            raise self.error(f'no match found, expected: "in", "not in", found {self.found()}')
        return self.finish_value_in(value, op, start)

    def finish_value_in(self, value: _Literal, op: str, value_at: int) -> _Pred:
        self.skip_ws()
        if _IDENT.match(self.text, self.pos) is None:
            raise self.error(f"no match found, expected a selector, found {self.found()}")
        selector = self.selector()
        return self.build(selector, op, value, value_at)

    def operator(self) -> str | None:
        """Read a match operator after an operand; None (position unchanged) if there is none."""
        save = self.pos
        self.skip_ws()
        if self.text.startswith("==", self.pos):
            self.pos += 2
            return _EQ
        if self.text.startswith("!=", self.pos):
            self.pos += 2
            return _NE
        if self.accept_keyword("in"):
            return _IN
        if self.accept_keyword("contains"):
            return _CONTAINS
        if self.accept_keyword("matches"):
            return _MATCHES
        if self.accept_keyword("is"):
            negated = self.accept_keyword("not")
            if not self.accept_keyword("empty"):
                self.skip_ws()
                expected = '"empty"' if negated else '"empty", "not"'
                raise self.error(f"no match found, expected: {expected}, found {self.found()}")
            return _NOT_EMPTY if negated else _EMPTY
        if self.accept_keyword("not"):
            if self.accept_keyword("in"):
                return _NOT_IN
            if self.accept_keyword("contains"):
                return _NOT_CONTAINS
            if self.accept_keyword("matches"):
                return _NOT_MATCHES
            self.skip_ws()
            raise self.error(f'no match found, expected: "contains", "in", "matches", found {self.found()}')
        self.pos = save
        return None

    # -- selectors and values -----------------------------------------------------------------

    def selector(self) -> _Selector:
        start = self.pos
        m = _IDENT.match(self.text, start)
        if m is None:
            raise self.error(f"no match found, expected a selector, found {self.found()}")
        path = [m.group()]
        self.pos = m.end()
        while not self.at_eof():
            ch = self.text[self.pos]
            if ch == ".":
                ident = _IDENT.match(self.text, self.pos + 1) or _DIGITS.match(self.text, self.pos + 1)
                if ident is None:
                    raise self.error("invalid selector: expected a field name after \".\"", self.pos + 1)
                path.append(ident.group())
                self.pos = ident.end()
            elif ch == "[":
                self.pos += 1
                self.skip_ws()
                if self.at_eof() or self.text[self.pos] not in "\"`":
                    raise self.error("invalid index: expected a quoted map key after \"[\"")
                path.append(self.string())
                self.skip_ws()
                if self.at_eof() or self.text[self.pos] != "]":
                    raise self.error('unclosed index expression: expected "]"')
                self.pos += 1
            else:
                break
        return _Selector(path=tuple(path), text=self.text[start : self.pos], pos=start)

    def value(self) -> _Literal:
        if self.at_eof():
            raise self.error("no match found, expected a value (string, number or word), found end of input")
        ch = self.text[self.pos]
        if ch in "\"`":
            return _Literal(self.string())
        if ch == "-" or ch.isdigit():
            start = self.pos
            m = _NUMBER.match(self.text, start)
            if m is None:
                raise self.error("invalid number literal")
            end = m.end()
            if end < len(self.text) and self.text[end] not in " \t\r\n)":
                raise self.error("invalid number literal (quote it if it is text)", start)
            self.pos = end
            return _Literal(m.group())
        m = _BARE.match(self.text, self.pos)
        if m is None:
            raise self.error(f"no match found, expected a value (string, number or word), found {self.found()}")
        self.pos = m.end()
        return _Literal(m.group())

    def string(self) -> str:
        start = self.pos
        quote = self.text[start]
        if quote == "`":
            end = self.text.find("`", start + 1)
            if end < 0:
                raise self.error("unterminated string literal", start)
            self.pos = end + 1
            return self.text[start + 1 : end].replace("\r", "")  # as Go's Unquote does
        out: list[str] = []
        i = start + 1
        text = self.text
        n = len(text)
        while True:
            if i >= n:
                raise self.error("unterminated string literal", start)
            c = text[i]
            if c == '"':
                self.pos = i + 1
                return "".join(out)
            if c == "\n":
                raise self.error("newline in string literal", i)
            if c != "\\":
                out.append(c)
                i += 1
                continue
            if i + 1 >= n:
                raise self.error("unterminated string literal", start)
            e = text[i + 1]
            if e in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[e])
                i += 2
            elif e in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[e]
                digits = text[i + 2 : i + 2 + width]
                if len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
                    raise self.error(f"invalid escape \\{e} in string literal", i)
                code = int(digits, 16)
                if e != "x" and (code > 0x10FFFF or 0xD800 <= code <= 0xDFFF):
                    raise self.error(f"invalid Unicode code point in escape \\{e}{digits}", i)
                out.append(chr(code))
                i += 2 + width
            elif e in "01234567":
                digits = text[i + 1 : i + 4]
                if len(digits) != 3 or not all(d in "01234567" for d in digits) or int(digits, 8) > 255:
                    raise self.error("invalid octal escape in string literal", i)
                out.append(chr(int(digits, 8)))
                i += 4
            else:
                raise self.error(f"invalid escape \\{e} in string literal", i)

    # -- building a match -----------------------------------------------------------------------

    def build(self, selector: _Selector, op: str, literal: _Literal | None, value_at: int) -> _Pred:
        regex: Pattern | None = None
        if op in (_MATCHES, _NOT_MATCHES):
            assert literal is not None
            regex = self.compile_regex(literal.raw, value_at)
        if self.schema is not None:
            self.check_schema(selector, op, literal, value_at)
        leaf = _leaf_predicate(op, literal, regex)
        return _selector_predicate(selector.path, leaf, _NOT_PRESENT[op])

    def compile_regex(self, pattern: str, at: int) -> Pattern:
        try:
            return compile_pattern(pattern)
        except RegexError as exc:
            raise self.error(f"invalid regular expression {pattern!r}: {exc}", at) from None

    def check_schema(self, selector: _Selector, op: str, literal: _Literal | None, value_at: int) -> None:
        node: Schema = self.schema  # type: ignore[assignment]
        for depth, seg in enumerate(selector.path):
            while isinstance(node, ListOf) and not seg.isdigit() and not _is_leaf(node.item):
                node = node.item  # selecting through a list of objects: "any" element
            if isinstance(node, _AnySchema):
                return
            if isinstance(node, ListOf) and seg.isdigit():
                node = node.item  # an explicit index
            elif isinstance(node, MapOf):
                node = node.value
            elif isinstance(node, Mapping) and seg in node:
                node = node[seg]
            else:
                invalid = ".".join(selector.path[: depth + 1])
                raise self.error(f'Selector "{invalid}" is not valid', selector.pos)
        if isinstance(node, _AnySchema):
            return
        kind, allowed = _allowed_ops(node)
        if op not in allowed:
            raise self.error(
                f'operator "{op}" is not supported for selector "{selector.text}" ({kind}); '
                f"supported: {', '.join(sorted(allowed))}",
                selector.pos,
            )
        target: Schema | None = None
        if op in (_EQ, _NE):
            target = node
        elif op in (_IN, _NOT_IN) and isinstance(node, ListOf):
            target = node.item
        if literal is not None and target in (bool, int, float):
            ok = {
                bool: literal.boolean is not None,
                int: _coerce_int(literal.raw) is not None,
                float: literal.number is not None,
            }[target]
            if not ok:
                type_name = target.__name__
                raise self.error(
                    f'value "{literal.raw}" cannot be coerced to {type_name} for selector "{selector.text}"',
                    value_at,
                )


def _is_leaf(schema: Schema) -> bool:
    return isinstance(schema, type) and schema in _LEAF_TYPES


_STRING_OPS: Final = frozenset({_EQ, _NE, _IN, _NOT_IN, _MATCHES, _NOT_MATCHES, _EMPTY, _NOT_EMPTY})
_SCALAR_OPS: Final = frozenset({_EQ, _NE})
_COLLECTION_OPS: Final = frozenset({_IN, _NOT_IN, _EMPTY, _NOT_EMPTY})
_EMPTINESS_OPS: Final = frozenset({_EMPTY, _NOT_EMPTY})


def _allowed_ops(node: Schema) -> tuple[str, frozenset[str]]:
    """Consul's "Supported Operations" per field kind."""
    if node is str:
        return "string", _STRING_OPS
    if node in (int, float, bool):
        return node.__name__, _SCALAR_OPS
    if isinstance(node, ListOf):
        if _is_leaf(node.item):
            return "list", _COLLECTION_OPS
        return "list of objects", _EMPTINESS_OPS
    if isinstance(node, (MapOf, Mapping)):
        return "map", _COLLECTION_OPS
    raise TypeError(f"invalid filter schema node: {node!r}")
