"""Multi-host tests run only when asked for: ``pytest -m multihost`` (root; CI runs them).

A plain ``pytest`` (or any ``-m`` expression that does not name the marker) leaves them
out, so ``make test`` and ``pytest -m faults`` select what they did before.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the ``multihost`` tests unless the ``-m`` expression names them."""
    if "multihost" in (config.option.markexpr or ""):
        return
    kept = [item for item in items if item.get_closest_marker("multihost") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(
            items=[item for item in items if item.get_closest_marker("multihost") is not None]
        )
        items[:] = kept
