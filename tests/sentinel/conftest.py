"""Sentinel tests run only when asked for: ``pytest -m sentinel`` (CI runs them).

A plain ``pytest`` (or any ``-m`` expression that does not name the marker) leaves them
out, so ``make test`` selects what it did before; they start three sentinels, two Redis
nodes, the API and workers, and kill a master on purpose.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the ``sentinel`` tests unless the ``-m`` expression names them."""
    if "sentinel" in (config.option.markexpr or ""):
        return
    kept = [item for item in items if item.get_closest_marker("sentinel") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(
            items=[item for item in items if item.get_closest_marker("sentinel") is not None]
        )
        items[:] = kept
