"""The replicated state: tables with Raft-index stamps, write transactions and watch sets.

::

    FSM.apply(index, command) --write_txn(index)--> catalog/kvs/sessions/txn *_txn functions
                                                         |  (undo log; commit fires watches)
    HTTP/RPC read --(ws)--> catalog/kvs/sessions queries -> (index, rows)   blocking.py waits on ws

store.py holds the tables and the transaction machinery; each table family's rules live in its
own module.
"""
