"""``lictor connect``: Connect (service mesh) commands. ``inject`` is the Kubernetes sidecar
injector (cli/inject.py)."""

from __future__ import annotations

from collections.abc import Callable

from lictor.cli import inject

__all__ = ["SUBCOMMANDS"]

SUBCOMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "inject": (inject.cmd_inject, "Inject the Envoy sidecar into Kubernetes pods (webhook or -f file)"),
}
