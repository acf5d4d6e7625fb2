"""Tests for lictor.common.filter: Consul's ?filter= language (go-bexpr) over JSON-shaped data."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lictor.common.errors import FilterError, ValidationError
from lictor.common.filter import (
    ANY,
    Filter,
    ListOf,
    MapOf,
    apply_filter,
    compile_filter,
    filter_map,
    obj,
)
from lictor.common.filter_schemas import (
    AGENT_SERVICE_SCHEMA,
    CATALOG_NODE_SCHEMA,
    CATALOG_SERVICE_SCHEMA,
    HEALTH_CHECK_SCHEMA,
    HEALTH_SERVICE_ENTRY_SCHEMA,
)

# --------------------------------------------------------------------------------------------
# Fixtures: result items as our handlers return them (Consul's JSON shapes).

ENTRY: dict[str, Any] = {
    "Node": {
        "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
        "Node": "foobar",
        "Address": "10.1.10.12",
        "Datacenter": "dc1",
        "TaggedAddresses": {"lan": "10.1.10.12", "wan": "10.1.10.12"},
        "Meta": {"instance_type": "t2.medium", "some-key": "x"},
    },
    "Service": {
        "ID": "redis1",
        "Service": "redis",
        "Kind": "",
        "Tags": ["primary", "v1"],
        "Address": "10.1.10.12",
        "TaggedAddresses": {"lan": {"Address": "10.1.10.12", "Port": 8000}},
        "Meta": {"redis_version": "4.0", "env": "prod"},
        "Port": 8000,
        "Weights": {"Passing": 10, "Warning": 1},
        "EnableTagOverride": False,
        "Proxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": 9191}]},
        "Connect": {"Native": True},
    },
    "Checks": [
        {"Node": "foobar", "CheckID": "service:redis", "Name": "Service 'redis' check",
         "Status": "passing", "ServiceTags": ["primary"], "Output": "HTTP GET: 200 OK"},
        {"Node": "foobar", "CheckID": "serfHealth", "Name": "Serf Health Status",
         "Status": "critical", "ServiceTags": [], "Output": ""},
    ],
}

CATALOG_ROW: dict[str, Any] = {
    "ID": "b4f64e8c-5c7d-11e9-bf68-8c8590bd0966",
    "Node": "node-1",
    "Address": "198.18.0.1",
    "Datacenter": "dc1",
    "TaggedAddresses": None,
    "NodeMeta": {"agent": "true", "arch": "i386", "os": "darwin"},
    "ServiceKind": "",
    "ServiceID": "api-internal",
    "ServiceName": "api-internal",
    "ServiceTags": ["tag"],
    "ServiceAddress": "",
    "ServiceWeights": {"Passing": 1, "Warning": 1},
    "ServiceMeta": {"environment": "qa"},
    "ServicePort": 9090,
    "ServiceEnableTagOverride": False,
    "ServiceProxy": {},
    "ServiceConnect": {},
    "Ratio": 0.5,
}


def m(expr: str, doc: Any) -> bool:
    return compile_filter(expr).matches(doc)


# --------------------------------------------------------------------------------------------
# The table: expression x document -> match

TABLE: list[tuple[str, Any, bool]] = [
    # equality, bare / quoted / raw values
    ("Service.Service == redis", ENTRY, True),
    ('Service.Service == "redis"', ENTRY, True),
    ("Service.Service == `redis`", ENTRY, True),
    ("Service.Service != redis", ENTRY, False),
    ("Service.Service == web", ENTRY, False),
    ("Service.Service != web", ENTRY, True),
    ("ServiceName == api-internal", CATALOG_ROW, True),  # hyphenated bare word
    ("Service.Service==redis", ENTRY, True),
    ("  Service.Service  ==\n\tredis  ", ENTRY, True),
    # in / contains on lists
    ('"primary" in Service.Tags', ENTRY, True),
    ("primary in Service.Tags", ENTRY, True),
    ('"secondary" in Service.Tags', ENTRY, False),
    ('"secondary" not in Service.Tags', ENTRY, True),
    ('Service.Tags contains "v1"', ENTRY, True),
    ("Service.Tags contains v2", ENTRY, False),
    ("Service.Tags not contains v2", ENTRY, True),
    ('"prim" in Service.Tags', ENTRY, False),  # lists: whole elements, not substrings
    # in / contains on maps: keys
    ('"env" in Service.Meta', ENTRY, True),
    ('"prod" in Service.Meta', ENTRY, False),
    ("Service.Meta contains redis_version", ENTRY, True),
    ('"os" not in NodeMeta', CATALOG_ROW, False),
    # in / contains on strings: substring
    ('"red" in Service.Service', ENTRY, True),
    ("Service.Service contains dis", ENTRY, True),
    ("Service.Service not contains xyz", ENTRY, True),
    ('"200 OK" in Checks.Output', ENTRY, True),
    # maps: dot and index forms
    ("Service.Meta.env == prod", ENTRY, True),
    ('Service.Meta["env"] == prod', ENTRY, True),
    ('Service.Meta[ "env" ] == prod', ENTRY, True),
    ("Service.Meta[`env`] == prod", ENTRY, True),
    ('Node.Meta["some-key"] == x', ENTRY, True),
    ("NodeMeta.os == darwin", CATALOG_ROW, True),
    ("Service.TaggedAddresses.lan.Port == 8000", ENTRY, True),
    ('Service.TaggedAddresses["lan"].Address == "10.1.10.12"', ENTRY, True),
    # emptiness
    ("Service.Tags is empty", ENTRY, False),
    ("Service.Tags is not empty", ENTRY, True),
    ("Service.Kind is empty", ENTRY, True),
    ("Service.Kind is not empty", ENTRY, False),
    ("ServiceProxy is empty", CATALOG_ROW, True),
    ("TaggedAddresses is empty", CATALOG_ROW, True),  # null
    ("TaggedAddresses is not empty", CATALOG_ROW, False),
    ("Checks is empty", ENTRY, False),
    ("Checks is not empty", ENTRY, True),
    # regular expressions (unanchored search, like Go's Match)
    ('Service.Service matches "^re"', ENTRY, True),
    ('Service.Service matches "dis$"', ENTRY, True),
    ('Service.Service matches "^dis"', ENTRY, False),
    ('Service.Service not matches "^web-"', ENTRY, True),
    ('Service.Service matches "(?i)REDIS"', ENTRY, True),
    (r'Node.Address matches `^10\.1\.\d+\.\d+\z`', ENTRY, True),
    ('Service.Port matches "8000"', ENTRY, False),  # not a string: no match
    ('Service.Port not matches "8000"', ENTRY, True),
    # numbers and booleans: the literal is read as the field's type
    ("Service.Port == 8000", ENTRY, True),
    ('Service.Port == "8000"', ENTRY, True),
    ("Service.Port == 8000.0", ENTRY, True),
    ('Service.Port == "0x1f40"', ENTRY, True),
    ("Service.Port != 8001", ENTRY, True),
    ("Service.Port == abc", ENTRY, False),
    ("Service.Port != abc", ENTRY, True),
    ("Service.Weights.Passing == 10", ENTRY, True),
    ("Ratio == 0.5", CATALOG_ROW, True),
    ('Ratio == ".5"', CATALOG_ROW, True),
    ("Ratio == 1", CATALOG_ROW, False),
    ("Service.EnableTagOverride == false", ENTRY, True),
    ("Service.EnableTagOverride == False", ENTRY, True),
    ('Service.EnableTagOverride == "0"', ENTRY, True),
    ("Service.EnableTagOverride != true", ENTRY, True),
    ("Service.EnableTagOverride == 0", ENTRY, True),
    ("Service.EnableTagOverride == nope", ENTRY, False),
    ("Service.Connect.Native == true", ENTRY, True),
    ('NodeMeta.agent == "true"', CATALOG_ROW, True),  # a string field compares text
    ("NodeMeta.agent == True", CATALOG_ROW, False),
    ("ServicePort == 9090", CATALOG_ROW, True),
    ("-5 in Numbers", {"Numbers": [1, -5]}, True),
    ("5 in Numbers", {"Numbers": [1, "5"]}, True),
    ("true in Flags", {"Flags": [False, True]}, True),
    ("x in Mixed", {"Mixed": [1, True, None, {"a": 1}]}, False),
    # lists of objects: "any" element, the operator (and its negation) applied per element
    ("Checks.Status == passing", ENTRY, True),
    ("Checks.Status == critical", ENTRY, True),
    ("Checks.Status == warning", ENTRY, False),
    ("Checks.Status != passing", ENTRY, True),
    ("not Checks.Status != passing", ENTRY, False),
    ('"passing" in Checks.Status', ENTRY, True),
    ('"pass" in Checks.Status', ENTRY, True),  # per element: substring of a string
    ("Checks.ServiceTags contains primary", ENTRY, True),
    ("Checks.ServiceTags is empty", ENTRY, True),  # the serfHealth check has none
    ("Checks.CheckID matches `^service:`", ENTRY, True),
    ("Checks.0.Status == passing", ENTRY, True),
    ("Checks.1.Status == passing", ENTRY, False),
    ("Checks.9.Status == passing", ENTRY, False),
    ("Checks.9.Status != passing", ENTRY, True),
    ("Service.Proxy.Upstreams.DestinationName == db", ENTRY, True),
    ("Service.Proxy.Upstreams.LocalBindPort == 9191", ENTRY, True),
    ("Checks.Status == passing", {"Checks": []}, False),
    ("Checks.Status != passing", {"Checks": []}, False),
    ("not Checks.Status != passing", {"Checks": []}, True),
    # missing keys and nulls: go-bexpr's "not present" disposition
    ("Service.Meta.nope == x", ENTRY, False),
    ("Service.Meta.nope != x", ENTRY, True),
    ('"x" in Service.Meta.nope', ENTRY, False),
    ('"x" not in Service.Meta.nope', ENTRY, True),
    ("Service.Meta.nope is empty", ENTRY, True),
    ("Service.Meta.nope is not empty", ENTRY, False),
    ('Service.Meta.nope matches "."', ENTRY, False),
    ('Service.Meta.nope not matches "."', ENTRY, True),
    ("Nope == x", ENTRY, False),
    ("Nope.Deeper.Still is empty", ENTRY, True),
    ("Service.Port.Deeper == 1", ENTRY, False),  # selecting into a scalar finds nothing
    ("TaggedAddresses.lan == x", CATALOG_ROW, False),
    ("Service.Tags == primary", ENTRY, False),  # equality on a list: no match
    ("Service.Tags != primary", ENTRY, True),
    ("Service.Meta == x", ENTRY, False),
    ("Service.Port is empty", ENTRY, False),
    # logic and precedence
    ("Service.Service == redis and Service.Port == 8000", ENTRY, True),
    ("Service.Service == redis and Service.Port == 1", ENTRY, False),
    ("Service.Service == web or Service.Port == 8000", ENTRY, True),
    ("Service.Service == web or Service.Port == 1", ENTRY, False),
    ("not Service.Service == web", ENTRY, True),
    ("not not Service.Service == redis", ENTRY, True),
    ("not (Service.Service == web or Service.Port == 8000)", ENTRY, False),
    # not > and > or: (not A) and B or C
    ("not Service.Service == redis and Service.Port == 1 or Service.Kind is empty", ENTRY, True),
    ("not Service.Service == redis and (Service.Port == 1 or Service.Kind is empty)", ENTRY, False),
    ("Service.Service == web and Service.Port == 1 or Service.Port == 8000", ENTRY, True),
    ("Service.Service == web and (Service.Port == 1 or Service.Port == 8000)", ENTRY, False),
    ("(Service.Service == redis)", ENTRY, True),
    ("((Service.Service == redis))and(Service.Port==8000)", ENTRY, True),
    ("not(Service.Service == web)", ENTRY, True),
    # selectors that look like keywords are still selectors
    ("notes == x", {"notes": "x"}, True),
    ("isolated == true", {"isolated": True}, True),
    ("Service.Service == and", {"Service": {"Service": "and"}}, True),
    # documents that are not objects
    ("A == b", None, False),
    ("A != b", ["x"], True),
]


@pytest.mark.parametrize(("expr", "doc", "expected"), TABLE, ids=[t[0] for t in TABLE])
def test_table(expr: str, doc: Any, expected: bool) -> None:
    assert m(expr, doc) is expected


@pytest.mark.parametrize(
    ("literal", "text"),
    [
        (r'"a\"b"', 'a"b'),
        (r'"tab\there"', "tab\there"),
        (r'"nl\n"', "nl\n"),
        (r'"back\\slash"', "back\\slash"),
        (r'"\x41\u00e9\U0001F600"', "A\u00e9\U0001f600"),
        (r'"\101"', "A"),
        (r'"\a\b\f\r\v"', "\a\b\f\r\v"),
        ("`raw \\n stays`", "raw \\n stays"),
        ('`with "quotes"`', 'with "quotes"'),
        ("`cr\r\nstripped`", "cr\nstripped"),
        ('"unicode é ünïcode"', "unicode é ünïcode"),
        ('""', ""),
    ],
)
def test_string_escapes(literal: str, text: str) -> None:
    assert m(f"Name == {literal}", {"Name": text})
    assert not m(f"Name != {literal}", {"Name": text})


# --------------------------------------------------------------------------------------------
# Errors: syntax, with the offset of the problem


@pytest.mark.parametrize(
    ("expr", "position", "fragment"),
    [
        ("Service ==", 10, "expected a value"),
        ("Service == ", 11, "expected a value"),
        ("Service.Tags contains", 21, "expected a value"),
        ("Service.Tags contains ", 22, "expected a value"),
        ('"x" in', 6, "expected a selector"),
        ('"x" in 5', 7, "expected a selector"),
        ('"x" == y', 4, '"in"'),
        ("(Service == web", 15, "unmatched parenthesis"),
        ("((a == b) or c == d", 19, "unmatched parenthesis"),
        ("Service == web)", 14, 'unmatched ")"'),
        ("Service ~= web", 8, "expected: \"!=\", \"==\""),
        ("Service = web", 8, "expected: \"!=\", \"==\""),
        ("Service === web", 10, "expected a value"),
        ("Service", 7, "expected: \"!=\""),
        ("Service is", 10, '"empty"'),
        ("Service is not", 14, '"empty"'),
        ("Service is full", 11, '"empty"'),
        ("Service not web", 12, '"contains", "in", "matches"'),
        ("Service == web and", 18, 'expected: "("'),
        ("Service == web or or x == y", 21, "expected"),  # "or" is read as a selector
        ("Service == web x == y", 15, '"and", "or"'),
        ("", 0, "empty"),
        ("   ", 3, "empty"),
        ("()", 1, "expected"),
        ("and == x and", 12, "expected"),
        ('Service == "abc', 11, "unterminated string"),
        ("Service == `abc", 11, "unterminated string"),
        ('Service == "a\nb"', 13, "newline"),
        (r'Service == "\q"', 12, "invalid escape"),
        (r'Service == "\x4"', 12, "invalid escape"),
        (r'Service == "\uD800"', 12, "code point"),
        (r'Service == "\400"', 12, "octal"),
        ("Service == 12abc", 11, "invalid number"),
        ("Service == 1.2.3", 11, "invalid number"),
        ("Service == 01", 11, "invalid number"),
        ("Service. == x", 8, "field name"),
        ("Meta[env] == x", 5, "quoted map key"),
        ('Meta["env" == x', 11, 'expected "]"'),
        ("Service == web and $", 19, "expected"),
        ('Service matches "("', 16, "invalid regular expression"),
        ('Service matches "a)"', 16, "invalid regular expression"),
        (r'Service matches "(a)\\1"', 16, "back-references"),
        ('Service matches "a(?=b)"', 16, "look-around"),
        ('Service not matches "(?<!x)y"', 20, "look-around"),
    ],
)
def test_syntax_errors(expr: str, position: int, fragment: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(expr)
    err = info.value
    assert err.position == position, str(err)
    assert fragment in str(err)
    assert str(err).startswith(f"filter: 1:{position + 1} ({position}): ") or "\n" in expr
    assert isinstance(err, ValidationError) and err.status == 400


def test_error_position_reports_line_and_column() -> None:
    with pytest.raises(FilterError) as info:
        compile_filter("Service == web and\n  Port ~ 1")
    assert info.value.position == 26
    assert str(info.value).startswith("filter: 2:8 (26): ")


def test_regex_error_names_the_pattern() -> None:
    with pytest.raises(FilterError, match=r"invalid regular expression '\[a-'"):
        compile_filter('Name matches "[a-"')


def test_regex_character_classes_are_not_mistaken_for_groups() -> None:
    assert m(r'Name matches "[(?=]x"', {"Name": "=x"})
    assert m(r'Name matches "[]$]"', {"Name": "$"})
    assert m(r"Name matches `a\$`", {"Name": "a$"})


def test_dollar_is_end_of_text_like_re2() -> None:
    assert not m('Name matches "web$"', {"Name": "web\n"})
    assert m('Name matches "(?m)web$"', {"Name": "web\nx"})


def test_deep_nesting_is_a_filter_error_not_a_recursion_error() -> None:
    with pytest.raises(FilterError, match="nested too deeply"):
        compile_filter("(" * 5000 + "a == b" + ")" * 5000)
    with pytest.raises(FilterError, match="nested too deeply"):
        compile_filter("not " * 2000 + "a == b")
    assert m("(" * 50 + "a == b" + ")" * 50, {"a": "b"})


def test_non_string_expression_is_rejected() -> None:
    with pytest.raises(FilterError):
        compile_filter(None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Schemas


@pytest.mark.parametrize(
    ("schema", "expr"),
    [
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Checks.Status == passing"),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Checks.0.Status == passing"),
        (HEALTH_SERVICE_ENTRY_SCHEMA, '"primary" in Service.Tags'),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Service.Meta.anything == x"),
        (HEALTH_SERVICE_ENTRY_SCHEMA, 'Node.Meta["some-key"] is not empty'),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Service.TaggedAddresses.lan.Port == 8000"),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Service.Proxy.Upstreams.DestinationName == db"),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Service.Proxy.Upstreams is empty"),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Checks.Definition.Anything.Goes == 1"),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Service.Connect.Native == true"),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Service.Service matches `^re`"),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Service.Service is empty"),
        (CATALOG_SERVICE_SCHEMA, "NodeMeta.os == linux and ServicePort != 80"),
        (CATALOG_SERVICE_SCHEMA, '"env" in ServiceMeta'),
        (CATALOG_SERVICE_SCHEMA, "ServiceEnableTagOverride == false"),
        (CATALOG_NODE_SCHEMA, "Meta.rack == r1 or TaggedAddresses.wan is not empty"),
        (AGENT_SERVICE_SCHEMA, "Weights.Passing == 1 and Kind == connect-proxy"),
        (HEALTH_CHECK_SCHEMA, "ServiceName != \"\" and Status == critical"),
        (obj(Ints=ListOf(int)), "7 in Ints"),
    ],
)
def test_schema_accepts(schema: Any, expr: str) -> None:
    compile_filter(expr, schema=schema)


@pytest.mark.parametrize(
    ("schema", "expr", "position", "fragment"),
    [
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Service.Nope == x", 0, 'Selector "Service.Nope" is not valid'),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Nope == x", 0, 'Selector "Nope" is not valid'),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Checks.Nope == x", 0, 'Selector "Checks.Nope" is not valid'),
        (HEALTH_SERVICE_ENTRY_SCHEMA, 'Service.ID == y and "a" in Service.Tagz', 27, '"Service.Tagz"'),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Service.Port.Deeper == 1", 0, '"Service.Port.Deeper"'),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Service.Tags.x == 1", 0, '"Service.Tags.x"'),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Service.Port == abc", 16, 'cannot be coerced to int'),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Service.Port == 1.5", 16, "cannot be coerced to int"),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Service.Connect.Native == yes", 26, "to bool"),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Service.Tags == primary", 0, 'operator "=="'),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Service.Port matches `8`", 0, 'operator "matches"'),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Service.Port is empty", 0, 'operator "is empty"'),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Checks == x", 0, "list of objects"),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "x in Checks", 5, "list of objects"),
        (HEALTH_SERVICE_ENTRY_SCHEMA, "Service.Meta == x", 0, "(map)"),
        (obj(Ints=ListOf(int)), "seven in Ints", 0, "cannot be coerced to int"),
        (obj(F=float), "F == abc", 5, "cannot be coerced to float"),
    ],
)
def test_schema_rejects(schema: Any, expr: str, position: int, fragment: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(expr, schema=schema)
    assert info.value.position == position, str(info.value)
    assert fragment in str(info.value)


def test_schemas_are_read_only_and_extendable() -> None:
    with pytest.raises(TypeError):
        AGENT_SERVICE_SCHEMA["New"] = str  # type: ignore[index]
    extended = obj(**AGENT_SERVICE_SCHEMA, Custom=MapOf(ANY))
    compile_filter("Custom.a.b.c == 1", schema=extended)
    with pytest.raises(FilterError):
        compile_filter("Custom.a == 1", schema=AGENT_SERVICE_SCHEMA)


def test_schema_validated_filter_evaluates_like_unvalidated() -> None:
    expr = 'Checks.Status == passing and "primary" in Service.Tags and Node.Meta.instance_type != x'
    assert compile_filter(expr, schema=HEALTH_SERVICE_ENTRY_SCHEMA).matches(ENTRY)
    assert compile_filter(expr).matches(ENTRY)


# --------------------------------------------------------------------------------------------
# Convenience API


def test_apply_filter_and_filter_map() -> None:
    services = {
        "redis1": {"ID": "redis1", "Service": "redis", "Meta": {"env": "production"}},
        "redis2": {"ID": "redis2", "Service": "redis", "Meta": {"env": "qa"}},
        "web": {"ID": "web", "Service": "web", "Meta": {}},
    }
    assert filter_map('Meta.env == "qa"', services) == {"redis2": services["redis2"]}
    assert list(filter_map("Service == redis", services)) == ["redis1", "redis2"]
    rows = list(services.values())
    assert apply_filter("Meta is empty", rows) == [services["web"]]
    assert apply_filter("Meta.env != qa", iter(rows)) == [services["redis1"], services["web"]]
    # No filter (absent or blank query parameter) keeps everything.
    assert apply_filter(None, rows) == rows
    assert apply_filter("  ", rows) == rows
    assert filter_map("", services) == services
    # A compiled filter can be reused.
    flt = compile_filter("Service == web", schema=AGENT_SERVICE_SCHEMA)
    assert isinstance(flt, Filter) and flt.expression == "Service == web"
    assert apply_filter(flt, rows) == [services["web"]]
    assert filter_map(flt, services) == {"web": services["web"]}
    with pytest.raises(FilterError):
        apply_filter("Nope == 1", rows, schema=AGENT_SERVICE_SCHEMA)


# --------------------------------------------------------------------------------------------
# Properties

ATOM_DOCS = st.fixed_dictionaries(
    {
        "S": st.sampled_from(["", "a", "b", "ab"]),
        "N": st.integers(-2, 2),
        "B": st.booleans(),
        "L": st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
        "M": st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["a", "b"]), max_size=2),
        "C": st.lists(st.fixed_dictionaries({"S": st.sampled_from(["a", "b"])}), max_size=3),
    }
)

ATOMS = st.sampled_from(
    [
        "S == a", "S != b", "S is empty", "S contains a", '"b" in S', "S matches `^a`",
        "N == 1", "N != 0", "N == -2", "B == true", "B != false",
        "L contains a", '"b" not in L', "L is not empty",
        'M.a == b', '"a" in M', "M is empty", "M.b != a",
        "C.S == a", "C.S != a", "C is empty", "Missing == x", "Missing is empty",
    ]
)


def _expressions() -> st.SearchStrategy[str]:
    return st.recursive(
        ATOMS,
        lambda inner: st.one_of(
            st.builds(lambda a: f"not {a}", inner),
            st.builds(lambda a: f"({a})", inner),
            st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
            st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
        ),
        max_leaves=8,
    )


EXPRS = _expressions()


@given(EXPRS, ATOM_DOCS)
def test_not_is_the_complement(expr: str, doc: dict[str, Any]) -> None:
    assert m(f"not ({expr})", doc) is (not m(expr, doc))


@given(EXPRS, EXPRS, ATOM_DOCS)
def test_and_is_a_subset_and_or_a_superset(a: str, b: str, doc: dict[str, Any]) -> None:
    ma, mb = m(a, doc), m(b, doc)
    assert m(f"({a}) and ({b})", doc) is (ma and mb)
    assert m(f"({a}) or ({b})", doc) is (ma or mb)
    assert m(f"not ({a}) and not ({b})", doc) is m(f"not (({a}) or ({b}))", doc)  # De Morgan


@given(st.lists(ATOMS, min_size=3, max_size=3), st.lists(st.booleans(), min_size=1, max_size=1),
       ATOM_DOCS)
def test_precedence_matches_python(atoms: list[str], negate: list[bool], doc: dict[str, Any]) -> None:
    a, b, c = atoms
    va, vb, vc = (m(x, doc) for x in atoms)
    for op1, op2 in itertools.product(["and", "or"], repeat=2):
        prefix = "not " if negate[0] else ""
        expr = f"{prefix}{a} {op1} {b} {op2} {c}"
        expected = eval(f"{prefix}{va} {op1} {vb} {op2} {vc}")  # noqa: S307 - Python's precedence is the oracle
        assert m(expr, doc) is expected, expr


@given(st.text(max_size=60))
@settings(max_examples=500)
def test_arbitrary_text_raises_only_filter_error(text: str) -> None:
    try:
        flt = compile_filter(text)
    except FilterError as err:
        assert err.position is not None and 0 <= err.position <= len(text)
        return
    flt.matches(ENTRY)
    flt.matches({})


_FRAGMENTS = st.sampled_from(
    ["Service", ".", "Tags", "[", "]", '"x"', "`y`", "==", "!=", " in ", " not ", " contains ",
     " matches ", " is ", " empty ", " and ", " or ", "(", ")", "1", "-2.5", "web", '"\\', " "]
)


@given(st.lists(_FRAGMENTS, max_size=12).map("".join))
@settings(max_examples=500)
def test_token_soup_raises_only_filter_error(text: str) -> None:
    try:
        flt = compile_filter(text, schema=obj(Service=obj(Tags=ListOf(str)), web=str, x=ANY))
    except FilterError as err:
        assert err.position is not None and 0 <= err.position <= len(text)
        return
    flt.matches({"Service": {"Tags": ["x"]}})
