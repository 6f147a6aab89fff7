"""Which coin each draw came from: the posterior of each coin for each distinct draw.

Pure numpy, so the API can serve a job's whole table without loading the estimators.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def posterior_rows(
    counts: Sequence[Sequence[int]], thetas: Sequence[float], weights: Sequence[float]
) -> np.ndarray:
    """P(coin k | heads, flips) for each ``[heads, flips, count]`` row: shape (M, K).

    The binomial coefficient is the same for every coin, so it cancels; the rest is done
    in log space (a coin on 0 or 1 gives exact zeros, not NaN).
    """
    rows = np.asarray(counts, dtype=np.float64).reshape(-1, 3)
    heads, flips = rows[:, :1], rows[:, 1:2]
    theta = np.asarray(thetas, dtype=np.float64)[None, :]
    with np.errstate(divide="ignore"):
        log_w = np.log(np.asarray(weights, dtype=np.float64))[None, :]
        log_t, log_1t = np.log(theta), np.log1p(-theta)
    tails = flips - heads
    # 0 * log(0) is 0 here: a coin that never shows heads explains an all-tails draw.
    joint = (
        log_w
        + np.where(heads > 0, heads * log_t, 0.0)
        + np.where(tails > 0, tails * log_1t, 0.0)
    )
    joint -= joint.max(axis=1, keepdims=True)
    weights_ = np.exp(joint)
    return weights_ / weights_.sum(axis=1, keepdims=True)


def most_frequent(counts: Sequence[Sequence[int]], limit: int) -> tuple[list[list[int]], bool]:
    """The ``limit`` rows with the largest counts (ties by flips, then heads), and whether
    rows were left out."""
    order = sorted(range(len(counts)), key=lambda i: (-counts[i][2], counts[i][1], counts[i][0]))
    kept = [list(counts[i]) for i in order[:limit]]
    return kept, len(counts) > limit
