"""One CLI error mapping (cli/base.py: fail/describe): every command words a failure as
``<context><reason>`` on stderr and exits 1; main() maps an unworded agent error the same way."""

from __future__ import annotations

import errno
import socket

import pytest

from lictor.cli import main as cli_main
from lictor.cli.base import Exit, describe, fail
from lictor.cli.http import APIError, ClientError


def test_fail_prints_context_and_reason_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    exc = fail("Error listing nodes: ", APIError(403, "Permission denied\n"))
    assert isinstance(exc, Exit) and exc.code == 1
    assert capsys.readouterr().err == "Error listing nodes: Unexpected response code: 403 (Permission denied)\n"


def test_file_errors_read_as_the_os_words_them() -> None:
    e = OSError(errno.ENOENT, "No such file or directory", "/nope/x")
    assert describe(e) == "No such file or directory: /nope/x"
    assert describe(FileExistsError("cert.pem already exists")) == "cert.pem already exists"


def test_the_file_is_not_named_twice(capsys: pytest.CaptureFixture[str]) -> None:
    fail("Error opening snapshot file /nope/x: ", OSError(errno.ENOENT, "No such file or directory", "/nope/x"))
    assert capsys.readouterr().err == "Error opening snapshot file /nope/x: No such file or directory\n"


def test_main_maps_an_unworded_agent_error(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    def boom(argv: list[str]) -> int:
        raise ClientError("cannot talk to the agent at 127.0.0.1:1: connection refused")
    monkeypatch.setitem(cli_main.COMMANDS, "boom", (boom, "test"))
    assert cli_main.main(["boom"]) == 1
    assert capsys.readouterr().err == "Error: cannot talk to the agent at 127.0.0.1:1: connection refused\n"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command,rest,context", [
    (["kv", "get"], ["k"], "Error querying agent: "),
    (["catalog", "services"], [], "Error listing services: "),
    (["members"], [], "Error retrieving members: "),
    (["operator", "raft", "list-peers"], [], "Error getting peers: "),
])
def test_commands_word_agent_failures_through_the_mapping(command: list[str], rest: list[str], context: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main.main([*command, f"-http-addr=127.0.0.1:{_closed_port()}", *rest])
    assert code == 1
    assert capsys.readouterr().err.startswith(context + "cannot connect to the agent")
