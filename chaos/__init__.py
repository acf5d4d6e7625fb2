"""Chaos testing for Lictor servers (and an etcd control): break the cluster on purpose under a
recorded client workload, then check the history.

Flow of one run (``python -m chaos run``, see ``chaos/README.md``)::

    netns.Network.setup()      hub namespace with a bridge + one namespace per server
      -> systems.System        real server processes (Lictor or etcd), started/killed by PID
      -> workload.Workload     client threads -> HTTP ops -> history.Op records
         nemesis.Nemesis       kill / pause / partition / restart-all -> history.Fault windows
      -> heal_all, final consistent reads (recorded too), catalog views from every server
      -> checkers              linearizability per key (linearizability.py), lost writes,
                               lock safety, catalog convergence, unavailability
      -> report                one JSON line + timeline.png
    finally: stop every PID, delete every namespace (also on Ctrl-C)

Invariants:
  * lictor never imports chaos; chaos only talks to servers over HTTP and signals.
  * the checkers are pure functions of recorded data, so ``python -m chaos check`` re-checks a
    stored history and the unit tests feed them synthetic histories.
  * an operation whose outcome is unknown is never counted as failed: it is maybe-applied.
"""

__all__: list[str] = []
