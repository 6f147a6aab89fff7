"""Aggregation of draws into distinct (heads, trials) pairs with their counts.

The EM only ever sees the distinct pairs, so its per-iteration cost does not grow
with the number of draws: 10**6 draws of 10 flips are 11 pairs. Draws may come with
integer multiplicities (``sample_weight``), so 10**9 draws never need 10**9 entries.
:func:`tally_draws` checks raw draws and tallies them in one pass over the data.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
from scipy.special import gammaln

from shared.estimation._validation import check_draws

# Above this many bincount slots (and 8 per draw) a dense tally costs more memory than it
# saves, so huge flip counts fall back to np.unique (a sort).
_DENSE_SLOTS = 1 << 22
# Raw draws are checked and tallied this many at a time (or more, see tally_draws): few
# enough that a chunk stays in cache from its checks to its tally, so each input array is
# read from memory once, and no temporary grows with the number of draws.
_CHUNK = 1 << 16
# A square (trials, heads) grid of up to this many slots is tallied in one bincount.
_SMALL_GRID = 1 << 12

_max = np.maximum.reduce
_min = np.minimum.reduce


@dataclass(frozen=True)
class CountTable:
    """Distinct (heads, trials) pairs, their counts, and the constants the EM reuses.

    Shapes: ``heads``, ``trials``, ``counts``, ``log_coef`` are (M,); ``design_t`` is (3, M)
    holding heads, tails and ones (so log theta, log(1 - theta), log weight times it is the
    joint log-probability in one product); ``design_n`` (M,) holds the trials as floats;
    ``stats_t`` is (M, 6) holding counts times heads, trials, 1, h(h-1), 2h(n-1) and n(n-1)
    (the M-step needs the first three, the observed information the others).
    ``n_draws`` is the total count (``inv_draws`` its inverse) and ``n_flips`` the total
    number of flips.
    """

    heads: np.ndarray
    trials: np.ndarray
    counts: np.ndarray
    log_coef: np.ndarray
    design_t: np.ndarray
    design_n: np.ndarray
    stats_t: np.ndarray
    n_draws: int
    inv_draws: float
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


def tally_draws(heads: Any, trials: Any, sample_weight: Any = None) -> CountTable:
    """Check raw draws and collapse them into a :class:`CountTable`, reading the data once.

    ``heads`` and ``trials`` (one number for all draws, or one per draw) are integer
    counts, as ints or integral floats; ``sample_weight`` (optional) is each draw's integer
    multiplicity. The arrays are read in one sweep of chunks: each chunk is checked
    (integral values, 0 <= heads <= trials, trials >= 1, weights >= 0) and tallied while it
    is in cache, and the chunks' tallies are merged at the end. When a chunk fails,
    :func:`check_draws` reads the whole input again to name the first bad entry, with the
    messages of the other estimators.
    """
    # Slicing a chunk is the only read of the data (asanyarray keeps an array subclass
    # until then, so a test can watch the reads).
    h_all, n_all = np.asanyarray(heads), np.asanyarray(trials)
    w_all = None if sample_weight is None else np.asanyarray(sample_weight)
    size = h_all.size
    if not (
        h_all.ndim == 1
        and size
        and _is_numeric(h_all)
        and _is_numeric(n_all)
        and (n_all.ndim == 0 or n_all.shape == h_all.shape)
        and (w_all is None or (_is_numeric(w_all) and w_all.shape == h_all.shape))
    ):
        _refuse(heads, trials, sample_weight)
    scalar = n_all.ndim == 0
    n_max = 0
    if scalar:
        n_one = _integers(np.asarray(n_all).reshape(1))
        if n_one is None or n_one[0] < 1:
            _refuse(heads, trials, sample_weight)
        n_max = int(n_one[0])
    floats = any(a is not None and a.dtype.kind == "f" for a in (h_all, n_all, w_all))
    parts = []
    start = 0
    with np.errstate(invalid="ignore") if floats else nullcontext():
        while start < size:
            # A chunk spans at least 8 slots of the dense tally per draw, so tallying stays
            # linear in the draws however many flips they have.
            rows = slice(start, min(size, start + max(_CHUNK, 8 * (n_max + 1))))
            part = _check_and_tally(
                np.asarray(h_all[rows]),
                n_max if scalar else np.asarray(n_all[rows]),
                None if w_all is None else np.asarray(w_all[rows]),
            )
            if part is None:
                _refuse(heads, trials, sample_weight)
            if part[2].size:  # a chunk of zero counts tallies nothing
                parts.append(part)
                if not scalar:
                    n_max = max(n_max, int(part[1][-1]))
            start = rows.stop
    if not parts:
        raise ValueError("no draws: every sample_weight is 0")
    if len(parts) == 1:
        h, n, c = parts[0]
    else:
        h, n, c = _distinct_pairs(*(np.concatenate(column) for column in zip(*parts, strict=True)))
    return table_from_pairs(h, n, c)


def _check_and_tally(
    heads: np.ndarray, trials: np.ndarray | int, weight: np.ndarray | None
) -> tuple[np.ndarray, ...] | None:
    """Distinct pairs and counts of one chunk of raw draws, or None if an entry is bad."""
    h = _integers(heads)
    if h is None:
        return None
    # As unsigned, a negative count is huge: one comparison checks both bounds of heads.
    unsigned = h.view(np.uint64)
    if isinstance(trials, int):
        if int(_max(unsigned, None)) > trials:
            return None
        n: np.ndarray | int = trials
    else:
        n = _integers(trials)
        if n is None or np.count_nonzero(unsigned > n.view(np.uint64)) or int(_min(n, None)) < 1:
            return None
    if weight is not None:
        weight = _integers(weight)
        if weight is None or int(_min(weight, None)) < 0:
            return None
    return _distinct_pairs(h, n, weight)


def _integers(values: np.ndarray) -> np.ndarray | None:
    """``values`` as int64, or None if one is not an integer (NaN, inf, 3.5, 1e300)."""
    if values.dtype.kind != "f":
        return values.astype(np.int64, copy=False)
    ints = values.astype(np.int64)
    # A value that is not a whole number in int64's range does not survive the round trip.
    return None if np.count_nonzero(ints != values) else ints


def _is_numeric(values: np.ndarray) -> bool:
    """Integer or floating dtype (not bool, strings or objects)."""
    return values.dtype.kind in "iuf"


def _refuse(heads: Any, trials: Any, sample_weight: Any) -> NoReturn:
    """Raise the error :func:`check_draws` gives for the first bad entry."""
    check_draws(heads, trials, sample_weight)
    raise ValueError("heads, trials and sample_weight must be integer counts")  # not reached


def table_from_pairs(heads: np.ndarray, trials: np.ndarray, counts: np.ndarray) -> CountTable:
    """A :class:`CountTable` from distinct pairs with positive counts; shapes (M,)."""
    counts = np.asarray(counts, dtype=np.float64)
    h, n = np.asarray(heads, dtype=np.int64), np.asarray(trials, dtype=np.int64)
    log_coef = log_binomial_coefficient(h, n)
    m = h.size
    design_t = np.empty((3, m))
    hf, tails, ones = design_t
    hf[:] = h
    np.subtract(n, h, out=tails)
    ones.fill(1.0)
    nf = n.astype(np.float64)
    stats = np.empty((6, m))
    stats[0] = hf
    stats[1] = nf
    stats[2] = 1.0
    np.multiply(hf, hf - 1, out=stats[3])
    np.multiply(hf, 2 * nf - 2, out=stats[4])
    np.multiply(nf, nf - 1, out=stats[5])
    stats *= counts
    n_draws = int(round(float(counts.sum())))
    return CountTable(
        heads=h,
        trials=n,
        counts=counts,
        log_coef=log_coef,
        design_t=design_t,
        design_n=nf,
        stats_t=stats.T,
        n_draws=n_draws,
        inv_draws=1.0 / n_draws,
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
        h = counts.nonzero()[0]
        n = np.full(h.shape, n_max, dtype=np.int64)
        return h, n, counts.take(h).astype(np.float64, copy=False)
    n_max = int(_max(trials, None))
    if n_max + 1 > limit:
        return _distinct_pairs_by_sort(heads, trials, weight)
    width = n_max + 1
    if width * width <= max(_SMALL_GRID, 4 * heads.size):
        # Few flips: one slot per (trials, heads) in a square grid, no pass to find the
        # trials values first.
        key = trials * width
        key += heads
        counts = np.bincount(key, weights=weight, minlength=width * width)
        keys = counts.nonzero()[0]
        n, h = np.divmod(keys, width)
        return h, n, counts.take(keys).astype(np.float64, copy=False)
    # Give each distinct trials value n its own block of n + 1 slots, one per heads count.
    values = np.bincount(trials, minlength=n_max + 1).nonzero()[0]
    if values.size == 1:
        return _distinct_pairs(heads, n_max, weight)
    sizes = values + 1
    if int(sizes.sum()) > limit:
        return _distinct_pairs_by_sort(heads, trials, weight)
    starts = np.cumsum(sizes) - sizes
    offset = np.zeros(n_max + 1, dtype=np.int64)
    offset[values] = starts
    key = offset.take(trials)
    key += heads
    counts = np.bincount(key, weights=weight, minlength=int(sizes.sum()))
    keys = counts.nonzero()[0]
    block = np.searchsorted(starts, keys, side="right") - 1
    return keys - starts[block], values[block], counts.take(keys).astype(np.float64, copy=False)


def _distinct_pairs_by_sort(
    heads: np.ndarray, trials: np.ndarray, weight: np.ndarray | None
) -> tuple[np.ndarray, ...]:
    """Fallback for flip counts too large for a dense tally."""
    pairs, inverse = np.unique(np.column_stack((trials, heads)), axis=0, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights=weight, minlength=pairs.shape[0])
    keep = counts > 0
    return pairs[keep, 1].copy(), pairs[keep, 0].copy(), counts[keep].astype(np.float64, copy=False)
