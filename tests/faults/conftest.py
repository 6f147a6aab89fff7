"""Fixtures for the fault tests: a fresh stack per test, since the tests kill its parts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from localstack.stack import Stack, StackConfig


@pytest.fixture
def stack_env() -> dict[str, str]:
    """Extra settings for :func:`fault_stack`; a test overrides it by parametrizing it."""
    return {}


@pytest.fixture
def fault_stack(tmp_path, stack_env) -> Iterator[Stack]:
    """Redis (append-only), draw source, one io and one cpu worker, API, on free ports."""
    config = StackConfig(
        # The tests kill workers and bring them back themselves, to time the recovery.
        restart_crashed=False,
        api_port=0,
        drawsource_port=0,
        api_workers=1,
        env={
            "EMCOINS_FETCH_READ_TIMEOUT": "1",
            "EMCOINS_FETCH_BATCH_SIZE": "20",
            "EMCOINS_SOURCE_ALLOWLIST": "http://127.0.0.1:*",
            "DRAWSOURCE_SEED": "7",
            **stack_env,
        },
        log_dir=tmp_path,
    )
    with Stack(config) as stack:
        yield stack


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def heavy_counts(seed: int = 0, draws: int = 20_000) -> list[list[int]]:
    """Count pairs with ~19,000 distinct (heads, flips): with 70 restarts and K=3, a fit
    of a few seconds."""
    rng = np.random.default_rng(seed)
    flips = rng.integers(20, 2000, draws)
    heads = rng.binomial(flips, rng.choice([0.2, 0.5, 0.8], draws))
    return [[int(h), int(n)] for h, n in zip(heads, flips, strict=True)]
