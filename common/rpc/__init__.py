"""Server RPC: the wire between servers (Raft, port 8300) and from client agents to servers.

::

    caller                                                             server
    ------                                                             ------
    RPCClient.call(addr, m, a) --+                               +--> handler.handle(m, a, peer)
    RPCClient.notify(addr, m, a) |  pool: 1 conn per addr        |     (one task per request,
                                 v  (multiplexed by request id)  |      <= max_inflight/conn)
             framing.encode_* -> [len:u32 BE][msgpack] ===TCP/TLS===> FrameDecoder.feed
                                                                 |     -> parse_message
    future[id] <- errmap.exception_from_reply <- res/err frame <-+--- errmap.error_reply
                                                                 +--> handler.notify(m, a, peer)
                                                                       (sync, in order, no reply)

Modules:

* :mod:`.framing`  sans-I/O: ``encode_frame``, ``FrameDecoder``, the message schema
  (``Request``/``Response``/``ErrorReply``/``Notification``, ``parse_message``).
* :mod:`.errmap`   sans-I/O: exceptions <-> ``err`` replies, one allowlisted table.
* :mod:`.conn`     asyncio drivers: ``RPCServer``, ``RPCClient``, ``PeerInfo``.
* :mod:`.tls`      ``SSLContext`` builders (verify_incoming / verify_outgoing /
  verify_server_hostname, ``server.<dc>.<domain>``).

Invariants:

* A peer that breaks the protocol (garbage, oversize header, schema violation, a frame stalled
  past ``frame_timeout``) loses *its* connection only; the server counts it in ``stats``.
* ``OSError``/``ssl.SSLError``/timeouts never escape: callers see ``TransportError``/``TLSError``.
* Replies are matched by id; they may arrive in any order. Notifications on one connection are
  delivered in send order; a notification may be dropped (never sent twice, never reordered).
* A request whose call failed with ``TransportError`` may or may not have run on the server.
"""

from lictor.common.rpc.conn import ClientStats, PeerInfo, RPCClient, RPCHandlerProtocol, RPCServer, ServerStats
from lictor.common.rpc.framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, FrameTooLarge, encode_frame

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "ClientStats",
    "FrameDecoder",
    "FrameTooLarge",
    "PeerInfo",
    "RPCClient",
    "RPCHandlerProtocol",
    "RPCServer",
    "ServerStats",
    "encode_frame",
]
