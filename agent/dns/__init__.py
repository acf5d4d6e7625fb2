"""DNS interface (issue 15): Consul's names on ports.dns, answered from the agent's cache.

``config`` (settings), ``resolver`` (pure: question -> answer from a catalog view), ``cache``
(catalog reads kept fresh by blocking queries), ``server`` (asyncio UDP/TCP listeners).
"""
