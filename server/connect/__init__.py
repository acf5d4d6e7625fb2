"""Connect's certificate authority: the built-in ("consul") provider, its Raft state and leader duties.

::

    leader (connect/leader.py)                       every server (connect/fsm.py, pure)
    ---------------------------------                ---------------------------------------
    first leadership: cluster ID, root key+cert  --> CONNECT_CA "initialize": ca_config, ca_roots,
                                                     ca_state (private key), system_metadata
    PUT configuration: validate (config.py);     --> "set_config"  (same keys)
      key type/bits changed or rotate asked:     --> "rotate": new root (its IntermediateCerts =
      new key+root, cross-signed by the old key        [new root cross-signed by the old key]),
                                                       old root Active=false, RotatedOutAt=now
    serial numbers: a block reserved at a time   --> "reserve_serials" (ca_state "serial")
    old roots whose leaves have all expired      --> "prune"

    ConnectCA.Sign (leader RPC, endpoints/connect_ca.py): rate limit -> validate CSR (ca.py)
      -> sign with the active root's key (provider.py) -> leaf PEM.  Leaves are never in Raft.

Invariants:

* Key material, serials, IDs and times are produced on the leader *before* proposing; the FSM only
  copies them into the tables, so every server applies the same log to the same state.
* Private keys live only in ``store.ext["ca_state"]``; nothing serves or logs that table.
* Exactly one root is ``active`` once initialized; an inactive root stays in the bundle until
  ``rotated_out_at + LeafCertTTL`` (plus a margin) has passed, so leaves it signed keep validating.
* A new root carries, in ``intermediate_certs``, itself cross-signed by the previous root: a leaf
  issued by the new root + that intermediate validates for a peer that still trusts only the old
  root.
"""
