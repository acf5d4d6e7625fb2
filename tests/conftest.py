"""Keep `@pytest.mark.slow` tests (long simulations, long chaos runs) out of the default run
without counting them as skipped.

They are *deselected* (not skipped) unless a `-m` expression is given, e.g. `-m slow`.
"""

from __future__ import annotations

import pytest
from hypothesis import settings

# No wall-clock deadline on hypothesis examples: on a shared 2-core box a slow example is load, not a
# defect (speed is measured in bench/, never in unit tests). Tests may still pass their own settings.
settings.register_profile("lictor", deadline=None)
settings.load_profile("lictor")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("markexpr"):
        return
    keep, slow = [], []
    for item in items:
        (slow if item.get_closest_marker("slow") else keep).append(item)
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = keep
