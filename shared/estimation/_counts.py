"""Aggregation of draws into distinct (heads, trials) pairs with their counts.

The EM only ever sees the distinct pairs, so its per-iteration cost does not grow
with the number of draws: 10**6 draws of 10 flips are 11 pairs. Draws may come with
integer multiplicities (``sample_weight``), so 10**9 draws never need 10**9 entries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

# Above this many bincount slots (and 8 per draw) a dense tally costs more memory than it
# saves, so huge flip counts fall back to np.unique (a sort).
_DENSE_SLOTS = 1 << 22


@dataclass(frozen=True)
class CountTable:
    """Distinct (heads, trials) pairs, their counts, and the constants the EM reuses.

    Shapes: ``heads``, ``trials``, ``counts``, ``log_coef`` are (M,); ``design_t`` is (3, M)
    holding heads, tails and ones (so log theta, log(1 - theta), log weight times it is the
    joint log-probability in one product); ``design_n`` (M,) holds the trials as floats;
    ``stats_t`` is (M, 6) holding counts times heads, trials, 1, h(h-1), h(n-1) and n(n-1)
    (the M-step needs the first three, the observed information the others).
    ``n_draws`` is the total count and ``n_flips`` the total number of flips.
    """

    heads: np.ndarray
    trials: np.ndarray
    counts: np.ndarray
    log_coef: np.ndarray
    design_t: np.ndarray
    design_n: np.ndarray
    stats_t: np.ndarray
    n_draws: int
    n_flips: float
    total_log_coef: float

    @property
    def max_trials(self) -> int:
        """Largest number of flips in any draw."""
        return int(self.trials.max())

    @property
    def n_pairs(self) -> int:
        """Number of distinct (heads, trials) pairs."""
        return int(self.heads.size)


def tally(
    heads: np.ndarray, trials: np.ndarray | int, sample_weight: np.ndarray | None = None
) -> CountTable:
    """Collapse validated per-draw counts into a :class:`CountTable` in one O(N) pass.

    ``trials`` is one int for all draws or an array of one entry per draw;
    ``sample_weight`` (optional) is each draw's integer multiplicity.
    """
    h, n, c = _distinct_pairs(heads, trials, sample_weight)
    return table_from_pairs(h, n, c)


def table_from_pairs(heads: np.ndarray, trials: np.ndarray, counts: np.ndarray) -> CountTable:
    """A :class:`CountTable` from distinct pairs with positive counts; shapes (M,)."""
    counts = np.asarray(counts, dtype=np.float64)
    h, n = np.asarray(heads, dtype=np.int64), np.asarray(trials, dtype=np.int64)
    log_coef = log_binomial_coefficient(h, n)
    hf, nf = h.astype(np.float64), n.astype(np.float64)
    return CountTable(
        heads=h,
        trials=n,
        counts=counts,
        log_coef=log_coef,
        design_t=np.vstack((hf, nf - hf, np.ones_like(hf))),
        design_n=nf,
        stats_t=counts[:, None]
        * np.column_stack((hf, nf, np.ones_like(hf), hf * (hf - 1), hf * (nf - 1), nf * (nf - 1))),
        n_draws=int(round(float(counts.sum()))),
        n_flips=float(counts @ nf),
        total_log_coef=float(counts @ log_coef),
    )


def log_binomial_coefficient(heads: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """log C(trials, heads), elementwise, exact enough for millions of flips."""
    h, n = np.asarray(heads, dtype=np.float64), np.asarray(trials, dtype=np.float64)
    return gammaln(n + 1.0) - gammaln(h + 1.0) - gammaln(n - h + 1.0)


def _distinct_pairs(
    heads: np.ndarray, trials: np.ndarray | int, weight: np.ndarray | None
) -> tuple[np.ndarray, ...]:
    """Distinct heads, trials and counts (zero counts dropped), ordered by (trials, heads)."""
    limit = max(_DENSE_SLOTS, 8 * heads.size)
    if np.ndim(trials) == 0:
        n_max = int(trials)
        if n_max + 1 > limit:
            return _distinct_pairs_by_sort(heads, np.full(heads.shape, n_max), weight)
        counts = np.bincount(heads, weights=weight, minlength=n_max + 1)
        h = np.flatnonzero(counts)
        return h, np.full(h.shape, n_max, dtype=np.int64), counts[h]
    n_max = int(trials.max())
    if n_max + 1 > limit:
        return _distinct_pairs_by_sort(heads, trials, weight)
    # Give each distinct trials value n its own block of n + 1 slots, one per heads count.
    values = np.flatnonzero(np.bincount(trials, minlength=n_max + 1))
    if values.size == 1:
        return _distinct_pairs(heads, n_max, weight)
    sizes = values + 1
    if int(sizes.sum()) > limit:
        return _distinct_pairs_by_sort(heads, trials, weight)
    starts = np.cumsum(sizes) - sizes
    offset = np.zeros(n_max + 1, dtype=np.int64)
    offset[values] = starts
    counts = np.bincount(offset[trials] + heads, weights=weight, minlength=int(sizes.sum()))
    keys = np.flatnonzero(counts)
    block = np.searchsorted(starts, keys, side="right") - 1
    return keys - starts[block], values[block], counts[keys]


def _distinct_pairs_by_sort(
    heads: np.ndarray, trials: np.ndarray, weight: np.ndarray | None
) -> tuple[np.ndarray, ...]:
    """Fallback for flip counts too large for a dense tally."""
    pairs, inverse = np.unique(np.column_stack((trials, heads)), axis=0, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights=weight, minlength=pairs.shape[0])
    keep = counts > 0
    return pairs[keep, 1].copy(), pairs[keep, 0].copy(), counts[keep]
