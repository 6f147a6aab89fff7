"""Starting points for EM runs: k-means++ seeding on heads fractions, or uniform random."""

from __future__ import annotations

import numpy as np

from shared.estimation._counts import CountTable
from shared.estimation._em import EPS, fold_coins

# Initial weights are floored so a seed never starts with an empty component.
_MIN_INIT_WEIGHT = 1e-3


def kmeans_seeds(
    table: CountTable, n_components: int, n_seeds: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ seeding on the heads fractions, one seed per row.

    Returns thetas (n_seeds, K) near fractions of picked draws (each draw weighted by its
    count, later centres favouring draws far from earlier ones), and weights (n_seeds, K)
    from assigning every draw to its nearest centre.
    """
    fractions = table.heads / table.trials  # (M,)
    heads, flips = table.heads, table.trials + 1.0
    counts = table.counts
    starts = np.empty((n_seeds, n_components))
    dist2 = nearest = None
    for j in range(n_components):
        if dist2 is None:
            # The first centre is picked by count alone, the same odds for every seed.
            cum = np.cumsum(counts)
            u = rng.random(n_seeds) * cum[-1]
            picked = np.minimum(np.searchsorted(cum, u, side="right"), fractions.size - 1)
        else:
            score = counts * dist2
            # When every draw already sits on a centre (fewer distinct fractions than K),
            # fall back to picking by count alone.
            stuck = np.add.reduce(score, 1) <= 0
            if np.count_nonzero(stuck):
                score[stuck] = counts
            picked = _pick(score, rng)
        # The start is the picked draw's fraction with one extra flip of random outcome:
        # never exactly 0 or 1 (where EM would crawl), and diverse even with few draws.
        jitter = rng.random(n_seeds)
        jitter += heads.take(picked)
        jitter /= flips.take(picked)
        starts[:, j] = jitter
        gap = fractions - fractions.take(picked)[:, None]
        np.multiply(gap, gap, out=gap)  # squared distance of each draw to centre j, (S, M)
        if dist2 is None:
            dist2, nearest = gap, np.zeros(gap.shape, dtype=np.int64)
        else:
            # Ties stay with the earlier centre, as argmin would keep them.
            nearest[gap < dist2] = j
            np.minimum(dist2, gap, out=dist2)
    # Each draw's count goes to its nearest centre: one product per centre, cheaper than
    # np.add.at or a product with a (S, M, K) one-hot array.
    weights = np.empty((n_seeds, n_components))
    for j in range(n_components):
        weights[:, j] = (nearest == j) @ counts
    np.maximum(starts, EPS, out=starts)
    np.minimum(starts, 1 - EPS, out=starts)
    return starts, _normalise(weights)


def random_seeds(
    n_components: int, n_seeds: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform thetas and Dirichlet(1) weights, one seed per row; shapes (n_seeds, K)."""
    thetas = rng.random((n_seeds, n_components))
    weights = rng.dirichlet(np.ones(n_components), size=n_seeds)
    np.maximum(thetas, EPS, out=thetas)
    np.minimum(thetas, 1 - EPS, out=thetas)
    return thetas, _normalise(weights)


def _pick(score: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sample one column per row with probability proportional to ``score`` (S, M)."""
    cum = np.add.accumulate(score, 1)
    u = rng.random(score.shape[0]) * cum[:, -1]
    # The number of cumulative scores at or below u is the picked column.
    below = (cum <= u[:, None]) @ np.ones(score.shape[1])
    return np.minimum(below.astype(np.int64), score.shape[1] - 1)


def _normalise(weights: np.ndarray) -> np.ndarray:
    """Floor and renormalise each row of weights (S, K) to sum to one."""
    weights = weights / fold_coins(np.add, weights)[:, None]
    np.maximum(weights, _MIN_INIT_WEIGHT, out=weights)
    weights /= fold_coins(np.add, weights)[:, None]
    return weights


def boundary_starts(
    table: CountTable,
    thetas: np.ndarray,
    weights: np.ndarray,
    share: float,
    rng: np.random.Generator,
) -> None:
    """Put one coin of a ``share`` of the seeds exactly on 0 or 1, in place.

    A maximum with a coin on the boundary taking a few all-tails (or all-heads) draws has a
    flat, narrow basin that interior starts rarely reach; a start on the boundary is already
    in it, and EM leaves such a start slowly, so it is only kept when it scores best.
    Shapes: ``thetas``, ``weights`` (S, K). Only sides that some draw could come from are used.
    """
    n_seeds, k = thetas.shape
    if k < 2:
        return
    # Masses of the all-tails and all-heads draws: products, not masked sums, as numpy
    # calls cost more than the arithmetic on a few pairs.
    zero = float(table.counts @ (table.heads == 0))
    full = float(table.counts @ (table.heads == table.trials))
    if not (zero > 0 or full > 0):
        return
    chosen = (rng.random(n_seeds) < share).nonzero()[0]
    if chosen.size == 0:
        return
    rows = thetas.take(chosen, 0)
    if zero > 0 and full > 0:
        upper = rng.integers(2, size=chosen.size) == 1  # (C,): the coin goes to 1, else 0
        mass = np.where(upper, full, zero)
        j = np.where(upper, rows.argmax(axis=1), rows.argmin(axis=1))
        thetas[chosen, j] = np.where(upper, 1 - EPS, EPS)
    else:
        # One side for every chosen seed: scalars, and one of argmax and argmin.
        upper = full > 0
        mass = full if upper else zero
        j = rows.argmax(axis=1) if upper else rows.argmin(axis=1)
        thetas[chosen, j] = 1 - EPS if upper else EPS
    share_j = mass / table.n_draws * rng.uniform(0.05, 1.0, size=chosen.size)
    w = weights.take(chosen, 0)
    every = np.arange(chosen.size)
    w[every, j] = 0.0
    w *= ((1 - share_j) / fold_coins(np.add, w))[:, None]
    w[every, j] = share_j
    weights[chosen] = w
