"""What every command shares: output helpers, flag parsing that exits the Go way, reading DATA args."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lictor.cli.flags import FlagError, FlagSet, HelpRequested, Parsed
from lictor.cli.http import ClientError, HTTPClient, client_from_flags

__all__ = ["Exit", "err", "make_client", "out", "parse", "read_data_arg"]


class Exit(Exception):
    """Stop the command with this exit code (main() catches it)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


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
        err(f"Error! {exc}")
        raise Exit(1) from None


def read_data_arg(arg: str, what: str = "data") -> bytes:
    """Consul's DATA argument: ``@path`` reads a file, ``-`` reads stdin, anything else is literal."""
    if arg == "-":
        return sys.stdin.buffer.read()
    if arg.startswith("@"):
        try:
            with open(arg[1:], "rb") as f:
                return f.read()
        except OSError as exc:
            err(f"Error! Failed to read {what} file {arg[1:]}: {exc.strerror or exc}")
            raise Exit(1) from None
    return arg.encode()
