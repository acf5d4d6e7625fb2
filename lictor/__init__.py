"""Lictor: a Consul-style service mesh.

The code lives in four layers, each a top-level folder mapped to an import package:
``lictor.cli`` -> ``lictor.agent`` -> ``lictor.server`` -> ``lictor.common``. Imports flow that way only.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
