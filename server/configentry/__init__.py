"""Mesh configuration: configuration entries (intentions included), their validation, the
discovery chain compiler and the catalog views of the mesh.

::

    HTTP /v1/config, /v1/connect/intentions*        agent/http/config_entries.py, intentions.py
      -> RPC ConfigEntry.* / Intention.*            server/endpoints/config_entries.py, intentions.py
           decode_entry (entries.py)                canonical PascalCase body; unknown keys are errors
           validate_entry(body, StoreView(store))   validate.py: fields, then the graph (chains...)
      -> Server.apply(CONFIG_ENTRY, payload)
      -> FSM: apply_config_entry (fsm.py)           CAS, validate_entry again on tx state, put/delete
           store.ext["config_entries"][(kind, name)] = ConfigEntryRow; bump config_entries[.<kind>]
    reads: compile_chain (chain.py)                 /v1/discovery-chain/:service
           intention_decision (intentions.py)       /v1/connect/intentions/check, the data plane
           gateway_services, merge (mesh.py)        /v1/catalog/gateway-services, ?merge-central-config

Invariants: everything here except fsm.py's registration is pure (no clock, no I/O); validation
is one function used before proposing and inside the FSM; a refused write changes nothing.
"""
