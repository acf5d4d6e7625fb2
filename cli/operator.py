"""``lictor operator raft list-peers|remove-peer|transfer-leader``: the Raft configuration as
Consul's CLI shows and changes it (``/v1/operator/raft/*``)."""

from __future__ import annotations

from urllib.parse import quote

from lictor.cli.base import err, fail, make_client, out, parse
from lictor.cli.flags import FlagSet
from lictor.cli.http import ClientError, add_http_flags
from lictor.cli.kv import columns

__all__ = ["RAFT_SUBCOMMANDS"]


def raft_list_peers(argv: list[str]) -> int:
    fs = FlagSet("lictor operator raft list-peers [options]",
                 "Displays the current Raft peer configuration.")
    add_http_flags(fs)
    p = parse(fs, argv)
    if p.args:
        err(f"Too many arguments (expected 0, got {len(p.args)})")
        return 1
    client = make_client(p)
    try:
        conf = client.get_json("/v1/operator/raft/configuration")
    except ClientError as exc:
        raise fail("Error getting peers: ", exc) from None
    rows = [("Node", "ID", "Address", "State", "Voter", "RaftProtocol")]
    for s in (conf or {}).get("Servers") or []:
        rows.append((s.get("Node", ""), s.get("ID", ""), s.get("Address", ""),
                     "leader" if s.get("Leader") else "follower",
                     "true" if s.get("Voter") else "false", str(s.get("ProtocolVersion", ""))))
    for line in columns(rows):
        out(line)
    return 0


def raft_remove_peer(argv: list[str]) -> int:
    fs = FlagSet("lictor operator raft remove-peer [options]",
                 "Removes the Lictor server with the given -id or -address from the Raft\n"
                 "configuration. Use it for a server that failed and will not come back: a running\n"
                 "server would join again.")
    add_http_flags(fs)
    fs.string("id", "The ID of the server to remove.", metavar="id")
    fs.string("address", "The address (IP:port of the server RPC port) of the server to remove.",
              metavar="addr")
    p = parse(fs, argv)
    if p.args:
        err(f"Too many arguments (expected 0, got {len(p.args)})")
        return 1
    if bool(p["id"]) == bool(p["address"]):
        err("Error removing peer: exactly one of -id and -address is required")
        return 1
    client = make_client(p)
    query = [("id", p["id"])] if p["id"] else [("address", p["address"])]
    try:
        client.request("DELETE", "/v1/operator/raft/peer", query)
    except ClientError as exc:
        raise fail("Error removing peer: ", exc) from None
    what = f"ID {p['id']!r}" if p["id"] else f"address {p['address']!r}"
    out(f"Removed peer with {what}")
    return 0


def raft_transfer_leader(argv: list[str]) -> int:
    fs = FlagSet("lictor operator raft transfer-leader [options]",
                 "Transfers Raft leadership to the server with -id, or to the most up-to-date voter.")
    add_http_flags(fs)
    fs.string("id", "The ID of the server to transfer leadership to (default: any).", metavar="id")
    p = parse(fs, argv)
    if p.args:
        err(f"Too many arguments (expected 0, got {len(p.args)})")
        return 1
    client = make_client(p)
    path = "/v1/operator/raft/transfer-leader"
    if p["id"]:
        path += "?id=" + quote(p["id"], safe="")
    try:
        resp = client.request("POST", path, body=b"")
        body = resp.json() or {}
    except (ClientError, ValueError) as exc:
        raise fail("Error transferring leadership: ", exc) from None
    new = body.get("NewLeader", "") if isinstance(body, dict) else ""
    out(f"Success! Leadership transferred{f' to {new}' if new else ''}.")
    return 0


RAFT_SUBCOMMANDS = {
    "list-peers": (raft_list_peers, "Display the current Raft peer configuration"),
    "remove-peer": (raft_remove_peer, "Remove a Lictor server from the Raft configuration"),
    "transfer-leader": (raft_transfer_leader, "Transfer Raft leadership to another server"),
}
