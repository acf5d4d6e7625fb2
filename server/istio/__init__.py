"""Istio's API on top of Lictor's config entries (issue 14).

    lictor apply -f FILE            cli/istio.py
      -> HTTP PUT /v1/istio/apply   agent/http/istio.py (body: the YAML/JSON text)
      -> RPC Istio.Apply            server/endpoints/istio.py
      -> CONFIG_ENTRY op "istio"    server/configentry/fsm.py -> server/istio/store.py (in the FSM txn)
           documents.py   PURE: text -> resources (kind/name/position), Kubernetes kinds skipped
           translate.py   PURE: every stored resource -> the config entries they imply (+ warnings)

Applied resources are stored as applied in ``store.ext["istio_resources"]``; the entries they
imply carry ``Meta["lictor-istio"]`` naming their sources, so a later apply or delete replaces
exactly those and never touches an entry a user wrote.
"""
