"""Checks shared by every estimator: counts of heads and trials, and identifiability of K.

Messages are written to be shown verbatim to an API user.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def max_identifiable_components(max_trials: int) -> int:
    """Largest K a mixture of binomials with at most ``max_trials`` flips per draw can identify.

    A mixture of K binomials with n flips per draw is identifiable only when
    n >= 2K - 1 (Teicher 1963), so K <= (n + 1) // 2.
    """
    max_trials = _as_int(max_trials, "max_trials")
    if max_trials < 1:
        raise ValueError(f"max_trials must be at least 1, got {max_trials}")
    return (max_trials + 1) // 2


def check_n_components(n_components: Any, max_trials: int) -> int:
    """Return ``n_components`` as an int, or raise if it is not a K the data can identify."""
    k = _as_int(n_components, "n_components")
    if k < 1:
        raise ValueError(f"n_components must be at least 1, got {k}")
    limit = max_identifiable_components(max_trials)
    if k > limit:
        flips = "flip" if max_trials == 1 else "flips"
        raise ValueError(
            f"n_components={k} cannot be identified from draws of at most {max_trials} "
            f"{flips}: a mixture of K binomials needs at least 2K-1 flips per draw "
            f"(Teicher 1963), so at most {limit} component{'s' if limit != 1 else ''} "
            f"can be estimated from these draws"
        )
    return k


def check_counts(heads: Any, trials: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return validated int64 ``(heads, trials)`` arrays of equal length, one entry per draw."""
    heads_arr = _as_count_array(heads, "heads")
    if heads_arr.ndim != 1:
        raise ValueError(f"heads must be a 1-D array of counts, got shape {heads_arr.shape}")
    if heads_arr.size == 0:
        raise ValueError("no draws: heads is empty")
    trials_arr = _as_count_array(trials, "trials")
    if trials_arr.ndim == 0:
        trials_arr = np.full(heads_arr.shape, int(trials_arr), dtype=np.int64)
    elif trials_arr.shape != heads_arr.shape:
        raise ValueError(
            f"trials must be one int or an array with one entry per draw: got shape "
            f"{trials_arr.shape} for {heads_arr.size} draws"
        )
    _first_bad(heads_arr < 0, "heads[{i}] = {h} is negative", heads_arr, trials_arr)
    _first_bad(
        trials_arr < 1, "trials[{i}] = {n}: a draw needs at least 1 flip", heads_arr, trials_arr
    )
    _first_bad(
        heads_arr > trials_arr, "heads[{i}] = {h} exceeds trials[{i}] = {n}", heads_arr, trials_arr
    )
    return heads_arr, trials_arr


def check_draws(
    heads: Any, trials: Any, sample_weight: Any = None
) -> tuple[np.ndarray, int | np.ndarray, np.ndarray | None]:
    """Validated draws for fitting: int64 heads, trials (one int or an array) and weights.

    Cheaper than :func:`check_counts` on large data: one flip count for all draws stays an
    int, and the bounds are checked in one pass (as unsigned, a negative count is huge).
    ``sample_weight`` holds each draw's integer multiplicity (>= 0, not all zero) or None.
    The estimators check and tally draws in one pass with ``_counts.tally_draws``, which
    calls this only to name the first bad entry of input that failed its checks.
    """
    heads_arr = _as_count_array(heads, "heads")
    if heads_arr.ndim != 1:
        raise ValueError(f"heads must be a 1-D array of counts, got shape {heads_arr.shape}")
    if heads_arr.size == 0:
        raise ValueError("no draws: heads is empty")
    trials_arr = _as_count_array(trials, "trials")
    weight = None if sample_weight is None else check_sample_weight(sample_weight, heads_arr.size)
    unsigned = heads_arr.view(np.uint64)
    if trials_arr.ndim == 0:
        n = int(trials_arr)
        if n < 1 or int(unsigned.max()) > n:
            check_counts(heads_arr, trials_arr)  # raises, naming the first bad draw
        return heads_arr, n, weight
    if trials_arr.shape != heads_arr.shape or int(trials_arr.min()) < 1:
        check_counts(heads_arr, trials_arr)
    if (unsigned > trials_arr.view(np.uint64)).any():
        check_counts(heads_arr, trials_arr)
    return heads_arr, trials_arr, weight


def check_sample_weight(sample_weight: Any, n_draws: int) -> np.ndarray:
    """Return integer multiplicities as float64 (exact below 2**53), one per draw."""
    weight = _as_count_array(sample_weight, "sample_weight")
    if weight.shape != (n_draws,):
        raise ValueError(
            f"sample_weight must hold one count per draw: got shape {weight.shape} "
            f"for {n_draws} draws"
        )
    if int(weight.min()) < 0:
        i = int(np.argmin(weight))
        raise ValueError(f"sample_weight[{i}] = {int(weight[i])} is negative")
    total = float(weight.sum(dtype=np.float64))
    if total < 1:
        raise ValueError("no draws: every sample_weight is 0")
    return weight.astype(np.float64)


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise if it is not an integer >= ``minimum``."""
    number = _as_int(value, name)
    if number < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return number


def _as_int(value: Any, name: str) -> int:
    """Return an integral number (3 or 3.0) as int; refuse bools, 3.5, strings."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not float(value).is_integer():
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _as_count_array(values: Any, name: str) -> np.ndarray:
    """Convert to an int64 array, accepting 3.0 as 3 but refusing 3.5, NaN and non-numbers."""
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be integer counts: {exc}") from exc
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise ValueError(f"{name} must be integer counts, got values of type {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            where = np.unravel_index(int(np.flatnonzero(bad)[0]), arr.shape) if arr.ndim else ()
            label = f"{name}[{', '.join(map(str, where))}]" if arr.ndim else name
            raise ValueError(f"{label} = {float(arr[where])} is not an integer count")
    return arr.astype(np.int64, copy=False)


def _first_bad(mask: np.ndarray, template: str, heads: np.ndarray, trials: np.ndarray) -> None:
    """Raise ValueError naming the first draw flagged in ``mask``, if any."""
    if mask.any():
        i = int(np.flatnonzero(mask)[0])
        raise ValueError(template.format(i=i, h=int(heads[i]), n=int(trials[i])))
