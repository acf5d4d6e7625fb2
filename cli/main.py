"""The ``lictor`` command: Consul's CLI conventions (``lictor agent -dev``, ``lictor kv get foo``).

::

    main(argv) -> dispatch on argv[0]
      agent                 -> flags -> ConfigSource -> load_config (validate, print warnings)
                               -> lictor.agent.run.run_agent(source, first)   (imported lazily)
      version               -> prints the version
      kv|catalog|services   -> subcommand table -> cli/http.py client -> /v1/...
      reload|leave          -> PUT /v1/agent/reload|leave
      config|intention      -> /v1/config, /v1/connect/intentions (cli/config_entries.py, cli/intention.py)
      operator raft ...     -> /v1/operator/raft/* (cli/operator.py)
      snapshot save|restore|inspect -> /v1/snapshot (cli/snapshot.py)

Every command returns its exit code; ``Exit`` (raised by the flag helpers) carries one too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from lictor.cli import catalog, kv, operator, services, snapshot
from lictor.cli import config_entries, intention
from lictor.cli import tls
from lictor.cli import acl
from lictor.cli import connect
from lictor.cli.base import Exit, err, fail, make_client, out, parse
from lictor.cli.flags import FlagSet, Parsed
from lictor.cli.http import ClientError, add_http_flags

__all__ = ["VERSION", "agent_source_from_flags", "main"]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lictor")
    except Exception:  # noqa: BLE001 - not installed (running from a checkout)
        from lictor import __version__

        return __version__


VERSION = _version()
PROTOCOL_LINE = ("Protocol 2 spoken by default, understands 2 to 3 "
                 "(agent will automatically use protocol >2 when speaking to compatible agents)")

Command = Callable[[list[str]], int]


# --------------------------------------------------------------------------------------------
# agent
# --------------------------------------------------------------------------------------------

# flag name -> configuration key (dotted) for flags that map one-to-one onto a config key
AGENT_FLAG_KEYS: dict[str, str] = {
    "server": "server",
    "bootstrap": "bootstrap",
    "bootstrap-expect": "bootstrap_expect",
    "data-dir": "data_dir",
    "bind": "bind_addr",
    "client": "client_addr",
    "advertise": "advertise_addr",
    "advertise-wan": "advertise_addr_wan",
    "http-port": "ports.http",
    "https-port": "ports.https",
    "grpc-port": "ports.grpc",
    "grpc-tls-port": "ports.grpc_tls",
    "dns-port": "ports.dns",
    "serf-lan-port": "ports.serf_lan",
    "serf-wan-port": "ports.serf_wan",
    "server-port": "ports.server",
    "node": "node_name",
    "node-id": "node_id",
    "node-meta": "node_meta",
    "datacenter": "datacenter",
    "primary-datacenter": "primary_datacenter",
    "domain": "domain",
    "retry-join": "retry_join",
    "retry-interval": "retry_interval",
    "retry-max": "retry_max",
    "rejoin": "rejoin_after_leave",
    "log-level": "log_level",
    "log-json": "log_json",
    "enable-script-checks": "enable_script_checks",
    "enable-local-script-checks": "enable_local_script_checks",
    "ui": "ui_config.enabled",
    "ui-dir": "ui_config.dir",
    "ui-content-path": "ui_config.content_path",
    "encrypt": "encrypt",
    "recursor": "recursors",
}


def _agent_flags() -> FlagSet:
    fs = FlagSet("lictor agent [options]",
                 "Starts the Lictor agent and runs until an interrupt is received. Configuration comes\n"
                 "from built-in defaults, -dev, then -config-file/-config-dir in order, then\n"
                 "$CONSUL_LOCAL_CONFIG/$LICTOR_LOCAL_CONFIG, then -hcl, then the flags below.")
    fs.bool("dev", "Development mode: one in-memory server on 127.0.0.1 that elects itself, with the UI, "
                   "Connect and gRPC (8502) enabled and debug logging.")
    fs.bool("server", "Run in server mode (Raft peer, state store).")
    fs.bool("bootstrap", "Let this server elect itself leader without peers (single-server clusters).")
    fs.int("bootstrap-expect", "Number of servers to wait for before the first election.")
    fs.string("data-dir", "Directory for persistent state (required unless -dev).", metavar="path")
    fs.list("config-file", "A JSON or HCL configuration file (or a directory) to load.", metavar="path")
    fs.list("config-dir", "A directory whose .json and .hcl files load in lexical order.", metavar="path")
    fs.list("hcl", "An inline HCL configuration fragment, loaded after the files.", metavar="string")
    fs.string("bind", "Address for cluster communication (gossip and server RPC).", metavar="ip")
    fs.string("client", "Address(es), space-separated, for the HTTP, DNS and gRPC listeners.", metavar="ip")
    fs.string("advertise", "Address advertised to the rest of the cluster.", metavar="ip")
    fs.string("advertise-wan", "Address advertised to other datacenters.", metavar="ip")
    fs.int("http-port", "HTTP API port (-1 disables).")
    fs.int("https-port", "HTTPS API port (-1 disables).")
    fs.int("grpc-port", "gRPC/xDS port (-1 disables).")
    fs.int("grpc-tls-port", "gRPC with TLS port (-1 disables).")
    fs.int("dns-port", "DNS port (-1 disables).")
    fs.int("serf-lan-port", "LAN gossip port.")
    fs.int("serf-wan-port", "WAN gossip port (-1 disables).")
    fs.int("server-port", "Server RPC port.")
    fs.string("node", "Name of this node (default: the hostname).", metavar="name")
    fs.string("node-id", "UUID of this node (default: read from, or generated into, <data-dir>/node-id).",
              metavar="uuid")
    fs.map("node-meta", "Node metadata pair.", sep=":")
    fs.string("datacenter", "Datacenter of this agent (default dc1).", metavar="name")
    fs.string("primary-datacenter", "The datacenter that is authoritative for ACLs and the CA.", metavar="name")
    fs.string("domain", "DNS domain (default consul).", metavar="domain")
    fs.list("retry-join", "Address of an agent to join at start, retried until it succeeds.", metavar="addr")
    fs.string("retry-interval", "Time to wait between join attempts (e.g. 30s).", metavar="duration")
    fs.int("retry-max", "Maximum number of join attempts (0 = forever).")
    fs.bool("rejoin", "Rejoin the cluster at start even after a previous leave.")
    fs.string("log-level", "Log level: trace, debug, info, warn or err.", metavar="level")
    fs.bool("log-json", "Write logs as JSON lines.")
    fs.bool("enable-script-checks", "Allow script checks from any source, including the HTTP API.")
    fs.bool("enable-local-script-checks", "Allow script checks defined in local configuration files only.")
    fs.bool("ui", "Serve the web UI.")
    fs.string("ui-dir", "Serve the web UI from this directory instead of the packaged one.", metavar="path")
    fs.string("ui-content-path", "URL path prefix of the web UI (default /ui/).", metavar="path")
    fs.string("encrypt", "Gossip encryption key (base64).", metavar="key")
    fs.list("recursor", "Upstream DNS server for names outside the Lictor domain.", metavar="addr")
    return fs


def agent_source_from_flags(p: Parsed, env: dict[str, str] | None = None) -> Any:
    """Build the ConfigSource for ``lictor agent``'s parsed flags. Only flags given explicitly are
    passed on, so they never mask a value from a file with a default."""
    from lictor.common.config import ConfigSource

    flags: dict[str, object] = {}
    for name, key in AGENT_FLAG_KEYS.items():
        if p.given(name):
            flags[key] = p[name]
    # -config-file and -config-dir keep their relative order (a later path wins, as in Consul)
    paths = [value for name, value in p.order if name in ("config-file", "config-dir")]
    return ConfigSource(
        flags=flags,
        config_files=tuple(p["config-file"]),
        config_dirs=tuple(p["config-dir"]),
        config_paths=tuple(paths),
        hcl=tuple(p["hcl"]),
        dev=bool(p["dev"]),
        env=dict(os.environ if env is None else env),
    )


def cmd_agent(argv: list[str]) -> int:
    from lictor.common.config import load_config
    from lictor.common.errors import ConfigError

    fs = _agent_flags()
    p = parse(fs, argv)
    if p.args:
        err(f"==> Unexpected extra arguments: {' '.join(p.args)}")
        return 1
    source = agent_source_from_flags(p)
    try:
        first = load_config(source)
    except ConfigError as exc:
        raise fail("==> ", exc) from None
    # Printed here, before the agent sets up logging; run_agent need not log first.warnings again.
    for warning in first.warnings:
        err(f"==> WARNING: {warning}")
    try:
        from lictor.agent.run import run_agent
    except ModuleNotFoundError as exc:
        if exc.name not in ("lictor.agent.run", "lictor.agent"):
            raise  # a missing dependency inside the agent is a bug to see in full
        raise fail("==> The agent is not available in this build: ", exc) from None
    return int(run_agent(source, first))


# --------------------------------------------------------------------------------------------
# version, reload, leave
# --------------------------------------------------------------------------------------------


def cmd_version(argv: list[str]) -> int:
    fs = FlagSet("lictor version", "Prints the version of this Lictor binary.")
    p = parse(fs, argv)
    del p
    out(f"Lictor v{VERSION}")
    out(PROTOCOL_LINE)
    return 0


def _agent_put(argv: list[str], synopsis: str, description: str, path: str, success: str, action: str) -> int:
    fs = FlagSet(synopsis, description)
    add_http_flags(fs, server=False)
    p = parse(fs, argv)
    if p.args:
        err(f"Too many arguments (expected 0, got {len(p.args)})")
        return 1
    client = make_client(p)
    try:
        client.put(path)
    except ClientError as exc:
        raise fail(f"Error {action}: ", exc) from None
    out(success)
    return 0


def cmd_reload(argv: list[str]) -> int:
    return _agent_put(argv, "lictor reload [options]",
                      "Makes the agent reload its configuration files (like SIGHUP).",
                      "/v1/agent/reload", "Configuration reload triggered", "reloading")


def cmd_leave(argv: list[str]) -> int:
    return _agent_put(argv, "lictor leave [options]",
                      "Makes the agent leave the cluster gracefully and shut down.",
                      "/v1/agent/leave", "Graceful leave complete", "leaving")


# --------------------------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------------------------


def _group(name: str, description: str, table: dict[str, tuple[Command, str]]) -> Command:
    def usage() -> str:
        width = max(len(k) for k in table)
        lines = [f"Usage: lictor {name} <subcommand> [options] [args]", "", f"  {description}", "",
                 "Subcommands:"]
        lines += [f"    {k.ljust(width)}    {help_}" for k, (_, help_) in sorted(table.items())]
        return "\n".join(lines) + "\n"

    def run(argv: list[str]) -> int:
        if not argv or argv[0] in ("-h", "-help", "--help"):
            stream = sys.stdout if argv else sys.stderr
            stream.write(usage())
            return 0 if argv else 1
        entry = table.get(argv[0])
        if entry is None:
            err(f"Unknown subcommand: {name} {argv[0]}")
            sys.stderr.write(usage())
            return 1
        return entry[0](argv[1:])

    return run


COMMANDS: dict[str, tuple[Command, str]] = {
    "acl": (_group("acl", "Manages ACL tokens, policies and roles.", acl.SUBCOMMANDS),
            "Interact with Lictor's ACLs"),
    "agent": (cmd_agent, "Runs a Lictor agent"),
    "catalog": (_group("catalog", "Reads the service catalog.", catalog.SUBCOMMANDS),
                "Interact with the catalog"),
    "connect": (_group("connect", "Interacts with Connect, the service mesh.", connect.SUBCOMMANDS),
                "Interact with Connect"),
    "config": (_group("config", "Writes, reads, lists and deletes centralized configuration entries.",
                      config_entries.SUBCOMMANDS), "Interact with Lictor's centralized configurations"),
    "intention": (_group("intention", "Creates, deletes, lists and checks service intentions.",
                         intention.SUBCOMMANDS), "Interact with Connect service intentions"),
    "kv": (_group("kv", "Reads and writes the key-value store.", kv.SUBCOMMANDS),
           "Interact with the key-value store"),
    "leave": (cmd_leave, "Gracefully leaves the cluster and shuts down"),
    "operator": (_group("operator", "Provides cluster-level tools for Lictor operators.", {
        "raft": (_group("operator raft", "Inspects and changes the Raft configuration.",
                        operator.RAFT_SUBCOMMANDS), "Provides cluster-level tools for Lictor operators"),
    }), "Provides cluster-level tools for Lictor operators"),
    "reload": (cmd_reload, "Triggers the agent to reload configuration files"),
    "snapshot": (_group("snapshot", "Saves, restores and inspects snapshots of Lictor server state.",
                        snapshot.SUBCOMMANDS), "Saves, restores and inspects snapshots of Lictor server state"),
    "services": (_group("services", "Registers and deregisters services with the local agent.",
                        services.SUBCOMMANDS), "Interact with services"),
    "tls": (_group("tls", "Builtin helpers for creating CAs and certificates.", {
        "ca": (_group("tls ca", "Helpers for CAs.", tls.CA_SUBCOMMANDS), "Helpers for CAs"),
        "cert": (_group("tls cert", "Helpers for certificates.", tls.CERT_SUBCOMMANDS), "Helpers for certificates"),
    }), "Builtin helpers for creating CAs and certificates"),
    "version": (cmd_version, "Prints the Lictor version"),
}


# issue 4: members, join, force-leave, keygen, keyring, event, rtt, watch (cli/cluster.py)
from lictor.cli.cluster import COMMANDS as _CLUSTER_COMMANDS  # noqa: E402

COMMANDS.update(_CLUSTER_COMMANDS)


def usage() -> str:
    width = max(len(k) for k in COMMANDS)
    lines = ["Usage: lictor [--version] [--help] <command> [<args>]", "", "Available commands are:"]
    lines += [f"    {k.ljust(width)}    {help_}" for k, (_, help_) in sorted(COMMANDS.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:
        sys.stderr.write(usage())
        return 1
    head = args[0]
    if head in ("-h", "-help", "--help"):
        sys.stdout.write(usage())
        return 0
    if head in ("-v", "-version", "--version"):
        return cmd_version([])
    entry = COMMANDS.get(head)
    if entry is None:
        err(f"Unknown command: {head!r}")
        sys.stderr.write(usage())
        return 1
    try:
        return entry[0](args[1:])
    except Exit as exc:
        return exc.code
    except ClientError as exc:  # a command that did not word this failure itself
        return fail("Error: ", exc).code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
