"""The web UI: hand-written ES modules and CSS in ``assets/`` (no build step, no CDN), served by
the agent at ``ui_config.content_path`` (``/ui/``), and the ``/v1/internal/ui/*`` endpoints it reads.

``static.install(app, agent)`` adds the asset routes when the UI is enabled (``ui_config.enabled``
or ``ui_config.dir``); ``api`` registers the internal endpoints in the route table like any handler.
"""
