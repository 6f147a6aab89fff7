"""A Redis master, its replica and three sentinels, for the tests of this folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sentinel.cluster import SentinelCluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    """Master, replica and three sentinels on free ports."""
    with SentinelCluster(tmp_path / "redis") as nodes:
        yield nodes
