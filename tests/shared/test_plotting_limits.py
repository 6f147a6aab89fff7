"""A plot's cost is bounded whatever the data the limits accept, and its curves stay right."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from scipy.stats import binom

from shared import plotting
from shared.config import Settings

SETTINGS = Settings()
# The most a job can ask: 10 components, and an EM and a GMM curve for each.
RESULT = {
    "n_components": SETTINGS.max_components,
    "em": {
        "thetas": list(np.linspace(0.05, 0.95, SETTINGS.max_components)),
        "weights": [1 / SETTINGS.max_components] * SETTINGS.max_components,
    },
    "gmm": {
        "means": list(np.linspace(0.05, 0.95, SETTINGS.max_components)),
        "stds": [0.01] * SETTINGS.max_components,
        "weights": [1 / SETTINGS.max_components] * SETTINGS.max_components,
    },
}


def seconds_to_render(counts: list[list[int]], fmt: str, limit: float = 30.0) -> float:
    """Time one render in a thread; fails if it has not finished after ``limit`` s."""
    box: dict[str, Any] = {}

    def run() -> None:
        start = time.perf_counter()
        box["image"] = plotting.render(counts, RESULT, fmt)
        box["took"] = time.perf_counter() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert "took" in box, f"{fmt} not rendered within {limit} s"
    assert box["image"]
    return box["took"]


def distinct_lengths_near_a_million(rows: int) -> list[list[int]]:
    rng = np.random.default_rng(5)
    flips = SETTINGS.max_flips - np.arange(rows)  # every row its own flip count
    heads = rng.binomial(flips, rng.choice([0.2, 0.5, 0.8], rows))
    return [[int(h), int(n), 1] for h, n in zip(heads, flips, strict=True)]


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_max_rows_of_distinct_lengths_near_a_million_flips_render_in_2_s(fmt):
    counts = distinct_lengths_near_a_million(SETTINGS.max_rows)
    assert seconds_to_render(counts, fmt) < 2.0


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_the_reported_500_rows_of_half_heads_render_in_2_s(fmt):
    # The case: 500 rows [n // 2, n] with n near 10^6 took 48-119 s as SVG.
    counts = [[n // 2, n, 1] for n in range(SETTINGS.max_flips - 500, SETTINGS.max_flips)]
    assert seconds_to_render(counts, fmt) < 2.0


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_draws_of_max_flips_render_in_2_s(fmt):
    n = SETTINGS.max_flips
    counts = [[k, n, 3] for k in range(0, n + 1, n // 5000)]
    assert seconds_to_render(counts, fmt) < 2.0


def by_hand(counts: list[list[int]], theta: float, weight: float) -> np.ndarray:
    """Expected draws per bar of 20, from every heads count's pmf, one flip count at a time."""
    expected = np.zeros(20)
    draws: dict[int, int] = {}
    for _, n, c in counts:
        draws[n] = draws.get(n, 0) + c
    for n, c in draws.items():
        k = np.arange(n + 1)
        # Bar by integer arithmetic, as the bars of the histogram are drawn.
        np.add.at(expected, np.minimum(k * 20 // n, 19), c * weight * binom.pmf(k, n, theta))
    return expected


def test_up_to_a_thousand_lengths_each_curve_is_exact():
    rng = np.random.default_rng(1)
    lengths = rng.choice(np.arange(1, 400), 300, replace=False)
    counts = [[0, int(n), int(c)] for n, c in zip(lengths, rng.integers(1, 9, 300), strict=True)]
    for theta in (0.03, 0.3, 0.5, 0.97):
        np.testing.assert_allclose(
            plotting.binomial_expected(counts, theta, 0.7),
            by_hand(counts, theta, 0.7),
            rtol=1e-9,
            atol=1e-9,
        )


def test_past_a_thousand_lengths_the_grouped_curve_stays_within_a_tenth_of_a_percent():
    rng = np.random.default_rng(2)
    lengths = np.concatenate([np.arange(1, 1500), rng.choice(np.arange(1500, 5000), 500)])
    counts = [[0, int(n), int(c)] for n, c in zip(lengths, rng.integers(1, 5, 1999), strict=True)]
    total = sum(c for _, _, c in counts)
    for theta in (0.1, 0.42, 0.5, 0.9):
        grouped = plotting.binomial_expected(counts, theta, 1.0)
        assert grouped.sum() == pytest.approx(total)
        assert np.abs(grouped - by_hand(counts, theta, 1.0)).max() < 1e-3 * total


def test_grouping_bounds_the_lengths_whatever_the_rows():
    counts = distinct_lengths_near_a_million(SETTINGS.max_rows)
    lengths, draws = plotting.flip_lengths(counts)
    assert len(lengths) < 20  # 1.5% groups over [900,001, 1,000,000]
    assert draws.sum() == SETTINGS.max_rows
    every_length = [[0, n, 1] for n in range(1, 200_000)]
    assert len(plotting.flip_lengths(every_length)[0]) <= 930


def test_bars_of_many_lengths_still_follow_integer_arithmetic():
    # 3/10 sits on the edge of bar 6: it belongs to bar 6, with 1,500 other lengths around.
    counts = [[3, 10, 4]] + [[0, n, 1] for n in range(11, 1511)]
    _, heights = plotting.histogram(counts)
    assert heights[6] == 4 and heights[0] == 1500 and heights.sum() == 1504
