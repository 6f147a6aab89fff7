"""Brute-force maximum of a two-coin mixture likelihood on a grid, independent of the code."""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy.stats import binom

EPS = 1e-10


def distinct(heads, trials):
    """Distinct (heads, trials) pairs and counts, by a plain Counter."""
    tally = Counter(zip(np.asarray(heads).tolist(), np.asarray(trials).tolist(), strict=True))
    pairs = sorted(tally)
    h = np.array([p[0] for p in pairs])
    n = np.array([p[1] for p in pairs])
    c = np.array([tally[p] for p in pairs], dtype=float)
    return h, n, c


def _grid_ll(h, n, c, t1, t2, w):
    """Log-likelihood on the product grid t1 x t2 x w; shape (len(t1), len(t2), len(w))."""
    l1 = binom.logpmf(h[None, :], n[None, :], t1[:, None])  # (G1, M)
    l2 = binom.logpmf(h[None, :], n[None, :], t2[:, None])  # (G2, M)
    a = np.log(w)[None, None, :, None] + l1[:, None, None, :]
    b = np.log1p(-w)[None, None, :, None] + l2[None, :, None, :]
    return np.logaddexp(a, b) @ c


def brute_force_max(heads, trials, *, learn: bool) -> float:
    """Best log-likelihood of K=2 on a coarse grid, refined by zooming in on its best point."""
    h, n, c = distinct(heads, trials)
    edge = np.array([EPS, 1e-6, 1e-4, 1e-3])
    thetas = np.unique(np.concatenate((edge, np.linspace(0.005, 0.995, 100), 1 - edge)))
    weights = np.linspace(0.01, 0.99, 50) if learn else np.array([0.5])
    if learn:
        weights = np.unique(np.concatenate(([1e-4, 1e-3], weights, [1 - 1e-3, 1 - 1e-4])))
    axes = [thetas, thetas, weights]
    best = -np.inf
    for _ in range(4):
        ll = _grid_ll(h, n, c, *axes)
        i = np.unravel_index(int(np.argmax(ll)), ll.shape)
        best = max(best, float(ll[i]))
        axes = [
            _zoom(axes[0], i[0]),
            _zoom(axes[1], i[1]),
            _zoom(axes[2], i[2]) if learn else axes[2],
        ]
    return best


def _zoom(axis: np.ndarray, i: int) -> np.ndarray:
    """A finer grid spanning the neighbours of ``axis[i]``."""
    lo, hi = axis[max(i - 1, 0)], axis[min(i + 1, axis.size - 1)]
    return np.unique(np.concatenate(([axis[i]], np.linspace(lo, hi, 31))))
