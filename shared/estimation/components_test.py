"""Parametric bootstrap likelihood-ratio test of k against k + 1 coins, sequential in k.

The statistic 2 (l_{k+1} - l_k) has no chi-squared limit here (under k coins, the extra
coin's parameters are not identified), so its null distribution is simulated from the
k-coin fit (McLachlan 1987), as mclust's ``mclustBootstrapLRT`` and mixtools'
``boot.comp`` do. Replicates are independent, so :func:`lrt_chunk` can run anywhere and
:func:`components_test` is the same computation in one process.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.exceptions import ConvergenceWarning

from shared.estimation._validation import check_positive_int, max_identifiable_components
from shared.estimation.binomial import BinomialMixture
from shared.estimation.bootstrap import check_rows, replicate_rng, resample

SIGNIFICANCE = 0.05
"""Size of each test. A test rejects k coins when ``p <= SIGNIFICANCE``: with B replicates
the p-value takes the values m / (B + 1), and when (B + 1) * 0.05 is whole (B = 19, 39,
99, 999) the chance under the null that p <= 0.05 is exactly 0.05 for a continuous
statistic, while ``p < 0.05`` would give a test of size 0.04 at B = 99."""

TIE_TOLERANCE = 1e-6
"""Statistics within this of the observed one count as reaching it. Log-likelihoods are
known to about this (the estimator's restarts count as reaching the same maximum within
1e-6), and under k coins many fits of k + 1 coins land on the k-coin maximum, where the
statistic is 0 up to rounding."""


def full_fit(
    heads: ArrayLike,
    trials: ArrayLike,
    counts: ArrayLike,
    n_components: int,
    *,
    restarts: int,
    seed: int,
    mixing: str = "learn",
) -> BinomialMixture:
    """The full-data fit with ``n_components`` coins and ``restarts`` restarts; ``mixing``
    is the model's ``weights`` option ("learn" or "equal"), the job's for every fit.

    Its random stream depends on the seed and the number of coins only, so the fit of k
    coins is the same whether it is the alternative at stage k - 1 or the null at stage k.
    """
    h, n, c = check_rows(heads, trials, counts)
    rng = replicate_rng(seed, "components_fit", 0, stage=n_components)
    model = BinomialMixture(n_components, n_init=restarts, weights=mixing, random_state=rng)
    with warnings.catch_warnings():
        # The best run is polished by Newton steps when EM stops short; that is good
        # enough for a likelihood ratio, and a warning per fit would only be noise.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(h, n, sample_weight=c)


def null_and_alternative(
    heads: ArrayLike,
    trials: ArrayLike,
    counts: ArrayLike,
    k: int,
    *,
    restarts: int,
    seed: int,
    mixing: str = "learn",
) -> tuple[BinomialMixture, BinomialMixture]:
    """The full-data fits with k and k + 1 coins (see :func:`full_fit`)."""
    k = check_positive_int(k, "k")
    return (
        full_fit(heads, trials, counts, k, restarts=restarts, seed=seed, mixing=mixing),
        full_fit(heads, trials, counts, k + 1, restarts=restarts, seed=seed, mixing=mixing),
    )


def fit_summary(model: BinomialMixture) -> dict[str, Any]:
    """What the test needs of a fit, JSON-ready: ``{"thetas", "weights", "log_likelihood"}``."""
    return {
        "thetas": model.thetas_.tolist(),
        "weights": model.weights_.tolist(),
        "log_likelihood": float(model.log_likelihood_),
    }


def observed_statistic(null_ll: float, alt_ll: float) -> float:
    """2 (l_{k+1} - l_k), clipped at 0: a fit of k + 1 coins that found less than the
    k-coin maximum has missed it, not found evidence for k coins."""
    return max(0.0, 2.0 * (float(alt_ll) - float(null_ll)))


def lrt_chunk(
    heads: ArrayLike,
    trials: ArrayLike,
    counts: ArrayLike,
    *,
    k: int,
    null: dict[str, Any],
    alternative: dict[str, Any],
    seed: int,
    indices: Sequence[int],
    mixing: str = "learn",
) -> list[dict[str, Any]]:
    """The replicates with these indices of the test of k against k + 1 coins.

    Each simulates a data set from the null fit (same flips per draw), fits k coins from
    the null's parameters and k + 1 from the alternative's, each with 2 random restarts,
    and returns ``{"index", "statistic", "failed"}``; ``failed`` (statistic None) when a
    fit raised, e.g. a simulated data set with fewer distinct rows than k + 1. A fit
    that stopped short of convergence is kept: its Newton-polished likelihood is what
    the observed statistic uses too, and dropping those replicates would drop the ones
    where the extra coin is hardest to place, the small statistics.
    """
    k = check_positive_int(k, "k")
    h, n, c = check_rows(heads, trials, counts)
    out = []
    for index in indices:
        rng = replicate_rng(seed, "components_test", index, stage=k)
        data = resample("parametric", h, n, c, null["thetas"], null["weights"], rng)
        try:
            null_ll = _refit(data, null, rng, mixing)
            alt_ll = _refit(data, alternative, rng, mixing)
        except ValueError:
            out.append({"index": int(index), "statistic": None, "failed": True})
            continue
        statistic = observed_statistic(null_ll, alt_ll)
        out.append({"index": int(index), "statistic": statistic, "failed": False})
    return out


def p_value(observed: float, statistics: Sequence[float]) -> float:
    """(1 + #{replicates with a statistic >= the observed one}) / (B + 1).

    ``statistics`` holds the replicates that did not fail; B is their number, so a
    failed replicate counts neither for nor against k coins. Statistics within
    :data:`TIE_TOLERANCE` below the observed one count as reaching it.
    """
    values = np.asarray(list(statistics), dtype=np.float64)
    reached = int(np.count_nonzero(values >= float(observed) - TIE_TOLERANCE))
    return (1 + reached) / (values.size + 1)


def is_significant(p: float) -> bool:
    """Whether a p-value rejects the null at :data:`SIGNIFICANCE` (``p <= 0.05``)."""
    return float(p) <= SIGNIFICANCE


def check_max_components(max_components: Any, trials: ArrayLike, n_pairs: int) -> int:
    """``max_components`` as an int in 2 .. what the data can identify, or ValueError."""
    top = check_positive_int(max_components, "max_components", minimum=2)
    max_trials = int(np.max(trials))
    limit = min(max_identifiable_components(max_trials), n_pairs)
    if top > limit:
        raise ValueError(
            f"max_components={top} is more than these draws can identify: at most "
            f"{max_trials} flips per draw and {n_pairs} distinct (heads, flips) pairs allow "
            f"at most {limit} coins (a mixture of K binomials needs 2K-1 flips per draw, "
            f"Teicher 1963, and K distinct pairs)"
        )
    return top


def components_test(
    heads: ArrayLike,
    trials: ArrayLike,
    counts: ArrayLike,
    *,
    max_components: int,
    replicates: int,
    seed: int,
    restarts: int = 10,
    mixing: str = "learn",
) -> dict[str, Any]:
    """Test k = 1, 2, ... against k + 1 coins, stopping at the first test that does not
    reject; in one process.

    Returns ``{"replicates": B, "tests": [{"k", "statistic", "p_value"}, ...],
    "selected": K}``: K is the first k not rejected, or ``max_components`` if every test
    up to k = max_components - 1 rejected.
    """
    h, n, c = check_rows(heads, trials, counts)
    seen = c > 0
    n_pairs = np.unique(np.column_stack((h[seen], n[seen])), axis=0).shape[0]
    top = check_max_components(max_components, n[seen], n_pairs)
    b = check_positive_int(replicates, "replicates")
    restarts = check_positive_int(restarts, "restarts")
    fits = {}

    def fit(coins: int) -> dict[str, Any]:
        if coins not in fits:
            model = full_fit(h, n, c, coins, restarts=restarts, seed=seed, mixing=mixing)
            fits[coins] = fit_summary(model)
        return fits[coins]

    tests = []
    selected = top
    for k in range(1, top):
        null, alternative = fit(k), fit(k + 1)
        observed = observed_statistic(null["log_likelihood"], alternative["log_likelihood"])
        chunk = lrt_chunk(
            h, n, c, k=k, null=null, alternative=alternative, seed=seed, indices=range(b),
            mixing=mixing,
        )
        p = p_value(observed, [r["statistic"] for r in chunk if not r["failed"]])
        tests.append({"k": k, "statistic": observed, "p_value": p})
        if not is_significant(p):
            selected = k
            break
    return {"replicates": b, "tests": tests, "selected": selected}


def _refit(
    data: tuple[np.ndarray, ...], start: dict[str, Any], rng: np.random.Generator, mixing: str
) -> float:
    """Log-likelihood of a fit to ``data`` from ``start`` plus 2 random restarts."""
    model = BinomialMixture(
        len(start["thetas"]),
        init={"thetas": start["thetas"], "weights": start["weights"]},
        n_random_init=2,
        weights=mixing,
        random_state=rng,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data[0], data[1], sample_weight=data[2])
    ll = float(model.log_likelihood_)
    if not math.isfinite(ll):
        raise ValueError(f"the refit's log-likelihood is {ll}")
    return ll
