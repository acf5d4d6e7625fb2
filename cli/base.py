"""What every command shares: output helpers, flag parsing that exits the Go way, reading DATA args."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lictor.cli.flags import FlagError, FlagSet, HelpRequested, Parsed
from lictor.cli.http import ClientError, HTTPClient, client_from_flags

__all__ = ["Exit", "describe", "err", "fail", "make_client", "out", "parse", "read_data_arg"]


class Exit(Exception):
    """Stop the command with this exit code (main() catches it)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def describe(exc: BaseException) -> str:
    """What the user reads about an error: the OS's text for a file error (with the file's
    name), the message otherwise (an agent's API error carries its status and body)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename is not None else exc.strerror
    return str(exc) or type(exc).__name__


def fail(context: str, exc: BaseException) -> Exit:
    """The CLI's one error mapping: print ``context`` (given with its own separator, as each
    command's Consul counterpart words it) followed by :func:`describe`, and return the
    :class:`Exit` to raise: exit code 1, as Consul's commands use for every failure."""
    reason = describe(exc)
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) in context:
        reason = exc.strerror or reason  # the context already names the file
    err(f"{context}{reason}")
    return Exit(1)


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def err(text: str) -> None:
    sys.stderr.write(text + "\n")


def parse(fs: FlagSet, argv: Sequence[str]) -> Parsed:
    """Parse or exit: -h prints usage to stdout (exit 0); a bad flag prints the error and the usage
    to stderr (exit 1), as Go's flag.ContinueOnError does in Consul's commands."""
    try:
        return fs.parse(argv)
    except HelpRequested:
        sys.stdout.write(fs.usage())
        raise Exit(0) from None
    except FlagError as exc:
        err(str(exc))
        sys.stderr.write(fs.usage())
        raise Exit(1) from None


def make_client(parsed: Parsed) -> HTTPClient:
    try:
        return client_from_flags(parsed)
    except ClientError as exc:
        raise fail("Error! ", exc) from None


def read_data_arg(arg: str, what: str = "data") -> bytes:
    """Consul's DATA argument: ``@path`` reads a file, ``-`` reads stdin, anything else is literal."""
    if arg == "-":
        return sys.stdin.buffer.read()
    if arg.startswith("@"):
        try:
            with open(arg[1:], "rb") as f:
                return f.read()
        except OSError as exc:
            raise fail(f"Error! Failed to read {what} file {arg[1:]}: ", exc) from None
    return arg.encode()
