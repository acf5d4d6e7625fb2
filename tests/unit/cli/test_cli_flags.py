"""cli/flags.py: Go flag conventions."""

from __future__ import annotations

import pytest

from lictor.cli.flags import FlagError, FlagSet, HelpRequested


def make() -> FlagSet:
    fs = FlagSet("prog [options] ARGS", "Does things.")
    fs.bool("dev", "Dev mode.")
    fs.string("node", "Node name.", default="n0", metavar="name")
    fs.int("http-port", "Port.", default=8500)
    fs.uint("flags", "Flags.")
    fs.list("retry-join", "Join address.", metavar="addr")
    fs.map("meta", "Meta pair.")
    fs.map("node-meta", "Node meta.", sep=":")
    return fs


@pytest.mark.parametrize(
    "argv",
    [
        ["-node=a", "-http-port=1"],
        ["-node", "a", "-http-port", "1"],
        ["--node=a", "--http-port=1"],
        ["--node", "a", "--http-port", "1"],
    ],
)
def test_all_spellings(argv: list[str]) -> None:
    p = make().parse(argv)
    assert (p["node"], p["http-port"]) == ("a", 1)
    assert p.given("node") and p.given("http-port") and not p.given("dev")


def test_defaults() -> None:
    p = make().parse([])
    assert (p["dev"], p["node"], p["http-port"], p["retry-join"], p["meta"]) == (False, "n0", 8500, [], {})
    assert p.args == [] and p.set == set()


@pytest.mark.parametrize(("argv", "value"), [(["-dev"], True), (["-dev=true"], True), (["-dev=false"], False),
                                             (["--dev=0"], False), (["-dev=T"], True)])
def test_booleans(argv: list[str], value: bool) -> None:
    assert make().parse(argv)["dev"] is value


def test_boolean_does_not_take_the_next_argument() -> None:
    p = make().parse(["-dev", "false"])
    assert p["dev"] is True and p.args == ["false"]


def test_bad_boolean() -> None:
    with pytest.raises(FlagError, match='^invalid boolean value "maybe" for -dev: parse error$'):
        make().parse(["-dev=maybe"])


def test_repeats_collect_lists_and_maps_in_order() -> None:
    p = make().parse(["-retry-join", "a", "-retry-join=b", "-meta", "k=v", "-meta=x=y=z", "-node-meta", "rack:1"])
    assert p["retry-join"] == ["a", "b"]
    assert p["meta"] == {"k": "v", "x": "y=z"}
    assert p["node-meta"] == {"rack": "1"}
    assert [n for n, _ in p.order] == ["retry-join", "retry-join", "meta", "meta", "node-meta"]


def test_map_needs_separator() -> None:
    with pytest.raises(FlagError, match='invalid value "nokv" for flag -meta: missing "="'):
        make().parse(["-meta", "nokv"])


def test_positional_args_after_flags() -> None:
    p = make().parse(["-dev", "key", "-node=x"])
    assert p.args == ["key", "-node=x"] and p["node"] == "n0"
    assert make().parse(["--", "-dev"]).args == ["-dev"]
    assert make().parse(["-", "x"]).args == ["-", "x"]


def test_unknown_flag() -> None:
    with pytest.raises(FlagError, match="^flag provided but not defined: -x$"):
        make().parse(["-x"])
    with pytest.raises(FlagError, match="^flag provided but not defined: -nope$"):
        make().parse(["--nope=1"])


@pytest.mark.parametrize("arg", ["-h", "-help", "--help", "--h"])
def test_help(arg: str) -> None:
    with pytest.raises(HelpRequested):
        make().parse([arg])


def test_int_errors_and_missing_value() -> None:
    with pytest.raises(FlagError, match='^invalid value "abc" for flag -http-port: parse error$'):
        make().parse(["-http-port=abc"])
    with pytest.raises(FlagError, match="^flag needs an argument: -node$"):
        make().parse(["-node"])
    with pytest.raises(FlagError, match='invalid value "-1" for flag -flags'):
        make().parse(["-flags=-1"])
    assert make().parse(["-http-port=0x10"])["http-port"] == 16
    assert make().parse(["-http-port", "-1"])["http-port"] == -1


def test_bad_syntax() -> None:
    with pytest.raises(FlagError, match="bad flag syntax: ---x"):
        make().parse(["---x"])


def test_usage_lists_every_flag_with_help() -> None:
    text = make().usage()
    assert text.startswith("Usage: prog [options] ARGS\n\n  Does things.\n")
    for line in ("  -dev", "  -node=<name>", "  -http-port=<int>", "  -retry-join=<addr>", "  -meta=<key=value>",
                 "  -node-meta=<key:value>"):
        assert line + "\n" in text
    assert "Join address. May be given more than once." in text
