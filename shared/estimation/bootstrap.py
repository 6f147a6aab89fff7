"""Bootstrap intervals for a binomial mixture, split into replicates any worker can run.

A replicate's random stream depends only on the job's seed, the analysis and the
replicate's index (:func:`replicate_rng`), so B replicates give the same intervals however
they are chunked or spread over workers. :func:`bootstrap_chunk` is one worker's share;
:func:`summarize_bootstrap` the fan-in; :func:`bootstrap` both in one process.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment
from scipy.special import gammaln, xlog1py, xlogy
from sklearn.exceptions import ConvergenceWarning

from shared.estimation._validation import (
    check_counts,
    check_positive_int,
    check_sample_weight,
)
from shared.estimation.binomial import BinomialMixture

KINDS = ("parametric", "nonparametric")

# Fixed codes, never reordered: they are part of every stored result's random streams.
_ANALYSIS_CODES = {"bootstrap": 1, "components_test": 2, "components_fit": 3}

AMBIGUITY_THRESHOLD = 2 * 0.01**2
"""A replicate is ambiguous when its second-best assignment costs less than this more
than its best one.

Costs are squared theta differences, not absolute ones: on a line, absolute costs tie
whenever a replicate's thetas all lie beyond the reference's (for reference 0.3, 0.4 and
replicate 0.45, 0.6 both assignments cost 0.35), so the matching itself would be
arbitrary. Squared costs always prefer the order-preserving match, and for two coins the
gap between the two assignments is 2 * (r2 - r1) * (t2 - t1), the product of the
reference's and the replicate's separations (with more coins, the smallest such product
over neighbouring coins). The threshold 2 * 0.01**2 flags a replicate when the geometric
mean of those two separations is under 0.01: about one standard error of a theta from a
few hundred draws of ten flips, and half the distance at which the estimator's restarts
count as the same basin. Below it, which label a coin carries, and so how the weight is
split between the close coins, is decided by noise.
"""

# Drawing each draw (coin, then heads) costs about 0.15 us per draw; a multinomial per
# distinct flip count and coin about 10 us whatever its size. Below this many draws per
# flip count, the draws one by one are cheaper.
_DRAWS_PER_GROUP = 150


def replicate_rng(seed: int, analysis: str, index: int, stage: int = 0) -> np.random.Generator:
    """The random stream of one replicate: a function of the job's seed, the analysis
    ("bootstrap", "components_test"), the stage (k for the test) and the replicate's index,
    never of the chunk that runs it."""
    if analysis not in _ANALYSIS_CODES:
        raise ValueError(f"analysis must be one of {sorted(_ANALYSIS_CODES)}, got {analysis!r}")
    seed = check_positive_int(seed, "seed", minimum=0)
    stage = check_positive_int(stage, "stage", minimum=0)
    index = check_positive_int(index, "index", minimum=0)
    return np.random.default_rng(
        np.random.SeedSequence([seed, _ANALYSIS_CODES[analysis], stage, index])
    )


def check_rows(
    heads: ArrayLike, trials: ArrayLike, counts: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated int64 (heads, trials, counts) rows; ``trials`` may be one int for all."""
    h, n = check_counts(heads, trials)
    c = check_sample_weight(counts, h.size)
    return h, n, np.rint(c).astype(np.int64)


def resample(
    kind: str,
    heads: ArrayLike,
    trials: ArrayLike,
    counts: ArrayLike,
    thetas: ArrayLike,
    weights: ArrayLike,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One bootstrap data set with as many draws as the data, as distinct (heads, trials)
    rows with their counts, ordered by (trials, heads).

    ``"nonparametric"`` draws the rows with replacement (a multinomial over them);
    ``"parametric"`` draws from the mixture (``thetas``, ``weights``), each distinct number
    of flips keeping its number of draws. The cost grows with the number of distinct rows,
    not of draws.
    """
    h, n, c = check_rows(heads, trials, counts)
    if kind == "nonparametric":
        total = int(c.sum())
        drawn = rng.multinomial(total, c / total)
        keep = drawn > 0
        return _aggregate(h[keep], n[keep], drawn[keep])
    if kind == "parametric":
        th, w = _check_mixture(thetas, weights)
        return _simulate(n, c, th, w, rng)
    raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")


def align(reference_thetas: ArrayLike, thetas: ArrayLike) -> tuple[np.ndarray, bool]:
    """Permutation ``perm`` with ``thetas[perm][j]`` matched to ``reference_thetas[j]``, and
    whether the match is ambiguous (see :data:`AMBIGUITY_THRESHOLD`).

    A Hungarian assignment on squared differences; the second-best assignment is the
    cheapest one that avoids at least one edge of the best, found by forbidding each edge
    in turn.
    """
    ref = np.asarray(reference_thetas, dtype=np.float64).ravel()
    th = np.asarray(thetas, dtype=np.float64).ravel()
    if ref.shape != th.shape:
        raise ValueError(
            f"thetas must hold as many coins as the reference ({ref.size}), got {th.size}"
        )
    cost = (ref[:, None] - th[None, :]) ** 2
    rows, perm = linear_sum_assignment(cost)
    best = float(cost[rows, perm].sum())
    if ref.size == 1:
        return perm.astype(np.int64), False
    second = np.inf
    for j in range(ref.size):
        forbidden = cost.copy()
        forbidden[j, perm[j]] = np.inf
        r, p = linear_sum_assignment(forbidden)
        second = min(second, float(forbidden[r, p].sum()))
    return perm.astype(np.int64), bool(second - best < AMBIGUITY_THRESHOLD)


def fit_replicate(
    kind: str,
    heads: ArrayLike,
    trials: ArrayLike,
    counts: ArrayLike,
    thetas: ArrayLike,
    weights: ArrayLike,
    rng: np.random.Generator,
    *,
    n_random_init: int = 2,
    mixing: str = "learn",
) -> dict[str, Any]:
    """Resample, refit K = len(thetas) coins from the full-data fit plus ``n_random_init``
    random restarts, and align to the full-data fit's labels. ``mixing`` is the model's
    ``weights`` option ("learn", or "equal" to keep them at 1/K as the job's fit did).

    Returns ``{"thetas", "weights", "failed", "ambiguous"}`` (JSON-ready, in the reference's
    order). ``failed`` when the refit raised (e.g. a resample with fewer distinct rows
    than coins) or did not converge; its thetas and weights are then empty.
    """
    th, w = _check_mixture(thetas, weights)
    data = resample(kind, heads, trials, counts, th, w, rng)
    model = BinomialMixture(
        n_components=th.size,
        init={"thetas": th.tolist(), "weights": w.tolist()},
        n_random_init=n_random_init,
        weights=mixing,
        random_state=rng,
    )
    try:
        with warnings.catch_warnings():
            # Non-convergence is reported as a failed replicate, not as a warning per refit.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(data[0], data[1], sample_weight=data[2])
    except ValueError:
        return _failed()
    if not model.converged_:
        return _failed()
    perm, ambiguous = align(th, model.thetas_)
    return {
        "thetas": model.thetas_[perm].tolist(),
        "weights": model.weights_[perm].tolist(),
        "failed": False,
        "ambiguous": ambiguous,
    }


def bootstrap_chunk(
    kind: str,
    heads: ArrayLike,
    trials: ArrayLike,
    counts: ArrayLike,
    thetas: ArrayLike,
    weights: ArrayLike,
    *,
    seed: int,
    indices: Sequence[int],
    mixing: str = "learn",
) -> list[dict[str, Any]]:
    """The replicates with these indices (each dict with its ``"index"``): one worker's chunk."""
    _check_kind(kind)
    h, n, c = check_rows(heads, trials, counts)
    th, w = _check_mixture(thetas, weights)
    out = []
    for index in indices:
        rng = replicate_rng(seed, "bootstrap", index)
        replicate = fit_replicate(kind, h, n, c, th, w, rng, mixing=mixing)
        out.append({"index": int(index), **replicate})
    return out


def summarize_bootstrap(
    replicates: Sequence[dict[str, Any]], *, kind: str, level: float
) -> dict[str, Any]:
    """Percentile intervals over the replicates that did not fail, in any order.

    Ambiguous replicates are kept, aligned by their best assignment: dropping them would
    cut the tails of exactly the coins whose labels are uncertain; their number is
    reported so a reader can judge. The bounds are the values at positions
    (B' + 1)(1 - level) / 2 and (B' + 1)(1 + level) / 2 among the B' usable replicates in
    ascending order (interpolated when not whole), so that for B' = 39, 79, 199, 999 at
    level 0.95 they are exact order statistics (Davison & Hinkley 1997, section 5.2). With
    no usable replicate the interval lists are empty.

    Returns ``{"replicates": B, "kind", "level", "thetas": [[lo, hi], ...],
    "weights": [[lo, hi], ...], "failed", "ambiguous"}``.
    """
    _check_kind(kind)
    level = check_level(level)
    ordered = sorted(replicates, key=lambda r: r["index"])
    indices = [r["index"] for r in ordered]
    if len(set(indices)) != len(indices):
        raise ValueError("replicates hold the same index twice")
    usable = [r for r in ordered if not r["failed"]]
    sizes = {len(r["thetas"]) for r in usable}
    if len(sizes) > 1:
        raise ValueError(f"replicates disagree on the number of coins: {sorted(sizes)}")
    if usable:
        thetas = _percentile_intervals([r["thetas"] for r in usable], level)
        weights = _percentile_intervals([r["weights"] for r in usable], level)
    else:
        thetas = weights = []
    return {
        "replicates": len(ordered),
        "kind": kind,
        "level": level,
        "thetas": thetas,
        "weights": weights,
        "failed": len(ordered) - len(usable),
        "ambiguous": sum(bool(r["ambiguous"]) for r in usable),
    }


def bootstrap(
    kind: str,
    heads: ArrayLike,
    trials: ArrayLike,
    counts: ArrayLike,
    thetas: ArrayLike,
    weights: ArrayLike,
    *,
    replicates: int,
    level: float,
    seed: int,
    mixing: str = "learn",
) -> dict[str, Any]:
    """All B replicates in this process, summarised: what the service returns for the
    same seed, however it chunks the work."""
    b = check_positive_int(replicates, "replicates")
    check_level(level)
    chunk = bootstrap_chunk(
        kind, heads, trials, counts, thetas, weights, seed=seed, indices=range(b), mixing=mixing
    )
    return summarize_bootstrap(chunk, kind=kind, level=level)


def check_level(level: Any) -> float:
    """Return the confidence level as a float strictly between 0 and 1."""
    try:
        value = float(level)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"level must be a number between 0 and 1, got {level!r}") from exc
    if isinstance(level, bool) or not 0.0 < value < 1.0:
        raise ValueError(f"level must be a number between 0 and 1, got {level!r}")
    return value


def _check_kind(kind: str) -> None:
    """Raise unless ``kind`` names a bootstrap."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")


def _check_mixture(thetas: ArrayLike, weights: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Thetas in [0, 1] and non-negative weights of the same length, normalised to sum 1."""
    th = np.asarray(thetas, dtype=np.float64).ravel()
    w = np.asarray(weights, dtype=np.float64).ravel()
    if th.size == 0 or w.shape != th.shape:
        raise ValueError(
            f"thetas and weights must be non-empty and of equal length, got {th.size} and {w.size}"
        )
    if not (np.all(np.isfinite(th)) and np.all((th >= 0) & (th <= 1))):
        raise ValueError(f"thetas must lie in [0, 1], got {th.tolist()}")
    if not (np.all(np.isfinite(w)) and np.all(w >= 0) and w.sum() > 0):
        raise ValueError(f"weights must be non-negative and not all 0, got {w.tolist()}")
    return th, w / w.sum()


def _simulate(
    trials: np.ndarray,
    counts: np.ndarray,
    thetas: np.ndarray,
    weights: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws from the mixture, as many per distinct flip count as ``counts`` holds for it."""
    flips, where = np.unique(trials, return_inverse=True)
    per_flips = np.bincount(where, weights=counts).astype(np.int64)
    if per_flips.sum() <= _DRAWS_PER_GROUP * flips.size:
        each = np.repeat(flips, per_flips)
        coin = rng.choice(thetas.size, size=each.size, p=weights)
        heads = rng.binomial(each, thetas[coin])
        return _aggregate(heads, each, np.ones(each.size, dtype=np.int64))
    out_h, out_n, out_c = [], [], []
    for n, total in zip(flips.tolist(), per_flips.tolist(), strict=True):
        for j, m in enumerate(rng.multinomial(total, weights).tolist()):
            # With more draws than possible heads counts, one multinomial over the counts
            # costs less than a binomial per draw (and its n + 1 cells fewer than m).
            if m > n + 1:
                pmf = _binomial_pmf(n, thetas[j])
                tally = rng.multinomial(m, pmf / pmf.sum())
                heads = np.flatnonzero(tally)
                count = tally[heads]
            elif m > 0:
                heads = rng.binomial(n, thetas[j], size=m)
                count = np.ones(m, dtype=np.int64)
            else:
                continue
            out_h.append(heads)
            out_n.append(np.full(heads.size, n, dtype=np.int64))
            out_c.append(count)
    return _aggregate(np.concatenate(out_h), np.concatenate(out_n), np.concatenate(out_c))


def _binomial_pmf(n: int, theta: float) -> np.ndarray:
    """P(h heads of n) for h = 0..n; shape (n + 1,).

    scipy.stats.binom.pmf gives the same numbers at several times the cost per call.
    """
    h = np.arange(n + 1, dtype=np.float64)
    log_coef = gammaln(n + 1.0) - gammaln(h + 1.0) - gammaln(n - h + 1.0)
    return np.exp(log_coef + xlogy(h, theta) + xlog1py(n - h, -theta))


def _aggregate(
    heads: np.ndarray, trials: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge rows with the same (heads, trials), ordered by (trials, heads)."""
    # One int64 key per row sorts as (trials, heads) and is far cheaper than a row-wise
    # unique; heads <= trials keeps keys distinct.
    width = int(trials.max()) + 1
    key = trials.astype(np.int64) * width + heads
    keys, where = np.unique(key, return_inverse=True)
    summed = np.bincount(where, weights=counts, minlength=keys.size)
    return keys % width, keys // width, np.rint(summed).astype(np.int64)


def _percentile_intervals(values: list[list[float]], level: float) -> list[list[float]]:
    """[lo, hi] per column of ``values`` (replicates x coins), as Python floats."""
    ordered = np.sort(np.asarray(values, dtype=np.float64), axis=0)
    tail = (1.0 - level) / 2.0
    lo, hi = (_order_statistic(ordered, q) for q in (tail, 1.0 - tail))
    return [[float(a), float(b)] for a, b in zip(lo, hi, strict=True)]


def _order_statistic(ordered: np.ndarray, q: float) -> np.ndarray:
    """Each column's value at position (B + 1) q of its B sorted values (1-based), linear
    between neighbours and clamped to the extremes.

    numpy's ``method="weibull"`` is the same rule, but computes 40 * 0.025 as
    1.0000000000000002 and so misses the exact order statistic.
    """
    n = ordered.shape[0]
    position = (n + 1) * q
    if abs(position - round(position)) < 1e-9:
        position = float(round(position))
    position = min(max(position, 1.0), float(n))
    below = int(np.floor(position))
    frac = position - below
    if frac == 0.0:
        return ordered[below - 1]
    return ordered[below - 1] + frac * (ordered[below] - ordered[below - 1])


def _failed() -> dict[str, Any]:
    """A replicate whose refit failed."""
    return {"thetas": [], "weights": [], "failed": True, "ambiguous": False}
