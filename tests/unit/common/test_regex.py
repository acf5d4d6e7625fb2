"""User patterns run on RE2 (issue 18 item 11): linear time, Consul's syntax limits."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lictor.agent.user_events import validate_filters
from lictor.common.errors import FilterError, ValidationError
from lictor.common.filter import compile_filter
from lictor.common.regex import RegexError, compile_pattern
from lictor.server.configentry.intentions import L7Request, permission_matches
from lictor.server.configentry.validate import _regex

# The pattern from the report. With a backtracking engine each extra "a" doubles the time:
# 30 of them already take seconds; 5000 never finish.
EVIL = "(a+)+$"
CRAFTED = "a" * 5000 + "!"


def test_catastrophic_pattern_finishes_in_a_child_process() -> None:
    # A liveness bound, not a speed measurement: a backtracking engine does not finish at all.
    code = (
        "from lictor.common.filter import compile_filter\n"
        f"f = compile_filter('Service matches \"{EVIL}\"')\n"
        f"assert not f.matches({{'Service': {CRAFTED!r}}})\n"
        f"assert f.matches({{'Service': 'aaaa'}})\n"
        "print('done')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done"


def test_repeat_counts_above_1000_are_refused_as_in_consul() -> None:
    assert compile_pattern("a{1000}").search("a" * 1000)
    with pytest.raises(RegexError, match="up to 1000"):
        compile_pattern("a{1001}")
    with pytest.raises(FilterError, match="invalid regular expression"):
        compile_filter('Service matches "x{2000}"')


def test_oversized_programs_and_patterns_are_refused() -> None:
    with pytest.raises(RegexError):
        compile_pattern("((((a{100}){100}){100}){100})")
    with pytest.raises(RegexError, match="would exceed"):  # the program-size budget
        compile_pattern(r"\pL{1000}" * 4)
    with pytest.raises(RegexError, match="longer than"):
        compile_pattern("a" * 5000)
    with pytest.raises(FilterError, match="longer than"):
        compile_filter("Service == " + "a" * 20000)


def test_re2_semantics_dollar_is_end_of_text_and_unencodable_text_does_not_raise() -> None:
    assert compile_pattern("web$").search("web\n") is False
    assert compile_pattern(r"web\z").search("web")
    assert compile_pattern("x").search("x\ud800") is False


def test_event_filters_use_re2() -> None:
    with pytest.raises(ValueError, match="Invalid node filter"):
        validate_filters("a{1001}", "", "")
    validate_filters("^node-[0-9]+$", "web", "v1")


def test_intention_regexes_validate_and_match_with_re2() -> None:
    with pytest.raises(ValidationError, match="invalid regular expression"):
        _regex("Permissions[0].HTTP.PathRegex", "/a{1001}")
    # RE2's Unicode classes (Python's re has no \pL): the same engine that validated it decides
    assert permission_matches({"HTTP": {"PathRegex": r"/\pL+"}}, L7Request(path="/abc"))
    assert not permission_matches({"HTTP": {"PathRegex": r"/\pL+"}}, L7Request(path="/a1"))
    assert permission_matches({"HTTP": {"PathRegex": "/api/.*"}}, L7Request(path="/api/x"))


def test_answers_are_booleans_for_search_and_whole_text_match() -> None:
    rx = compile_pattern("b+")
    assert rx.search("abbc") is True and rx.search("ac") is False
    assert rx.fullmatch("bbb") is True and rx.fullmatch("abbb") is False
    assert compile_pattern("é+").fullmatch("éé") is True  # UTF-8 text, not bytes
