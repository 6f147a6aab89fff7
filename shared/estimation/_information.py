"""Standard errors of the thetas from the observed information matrix at the MLE."""

from __future__ import annotations

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve

from shared.estimation._counts import CountTable
from shared.estimation._em import EPS, e_step, log_likelihood
from shared.estimation._newton import score_and_information


def on_boundary(thetas: np.ndarray) -> np.ndarray:
    """Which thetas sit on the boundary of [EPS, 1 - EPS]."""
    margin = EPS * 1e-3
    return (thetas <= EPS + margin) | (thetas >= 1 - EPS - margin)


def observed_information(
    table: CountTable, thetas: np.ndarray, weights: np.ndarray, learn: bool
) -> np.ndarray:
    """Negative Hessian of the log-likelihood in (thetas, first K-1 weights).

    Shapes: ``thetas``, ``weights`` (K,) -> (P, P) with P = 2K - 1 when the weights are
    learned (the last weight is 1 minus the others) and P = K when they are fixed.
    """
    resp = e_step(table, thetas[None, :], np.log(weights)[None, :])[0]  # (1, K, M)
    return information_from_posterior(table, resp, thetas, weights, learn)


def information_from_posterior(
    table: CountTable, resp: np.ndarray, thetas: np.ndarray, weights: np.ndarray, learn: bool
) -> np.ndarray:
    """:func:`observed_information` from the posteriors ``resp`` (1, K, M) at the point."""
    return score_and_information(table, resp, thetas[None, :], weights[None, :], learn)[1][0]


def standard_errors(
    table: CountTable, thetas: np.ndarray, weights: np.ndarray, learn: bool
) -> np.ndarray:
    """One standard error per theta; NaN on the boundary or where the information is singular.

    Thetas on the boundary are held fixed (the MLE is not a stationary point there), so the
    others' errors come from the information about the remaining parameters.
    """
    return errors_from_information(observed_information(table, thetas, weights, learn), thetas)


def errors_from_information(info: np.ndarray, thetas: np.ndarray) -> np.ndarray:
    """:func:`standard_errors` from the observed information ``info`` (P, P) at ``thetas``."""
    k = thetas.size
    margin = EPS * 1e-3
    if thetas.min() > EPS + margin and thetas.max() < 1 - EPS - margin:
        free_thetas, n_free, sub = slice(None), k, info
    else:
        free_thetas = ~on_boundary(thetas)
        n_free = int(np.count_nonzero(free_thetas))
        if not n_free:
            return np.full(k, np.nan)
        free = np.ones(info.shape[0], dtype=bool)
        free[:k] = free_thetas
        sub = info[free][:, free]
    try:
        # numpy's Cholesky: the positive-definiteness check without scipy's wrapper cost.
        lower_inv = np.linalg.inv(np.linalg.cholesky(sub))
    except np.linalg.LinAlgError:
        return np.full(k, np.nan)
    # cov = L^-T L^-1, so its diagonal is the column sums of squares of L^-1.
    np.multiply(lower_inv, lower_inv, out=lower_inv)
    variances = np.add.reduce(lower_inv, 0)[:n_free]
    result = np.full(k, np.nan)
    # Non-positive variances (rounding on a nearly singular matrix) stay NaN.
    result[free_thetas] = np.sqrt(variances, out=np.full(n_free, np.nan), where=variances > 0)
    return result


def score(table: CountTable, thetas: np.ndarray, weights: np.ndarray, learn: bool) -> np.ndarray:
    """Gradient of the log-likelihood in the coordinates of :func:`observed_information`."""
    resp = e_step(table, thetas[None, :], np.log(weights)[None, :])[0][0]  # (K, M)
    heads, flips, draws = (resp @ table.stats_t)[:, :3].T  # each (K,)
    grad = [(heads - thetas * flips) / (thetas * (1 - thetas))]
    if learn and thetas.size > 1:
        per_weight = draws / weights
        grad.append(per_weight[:-1] - per_weight[-1])
    return np.concatenate(grad)


def newton_polish(
    table: CountTable,
    thetas: np.ndarray,
    weights: np.ndarray,
    learn: bool,
    ll: float,
    *,
    max_steps: int = 3,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Newton steps on the observed information over the free parameters, kept while they
    raise the log-likelihood and stay inside the box; shapes (K,), returns the new point.

    Skipped when a weight is within 1e-9 of zero or the information is not positive
    definite there (not a strict local maximum in the free parameters).
    """
    k = thetas.size
    for _ in range(max_steps):
        if learn and k > 1 and weights.min() < 1e-9:
            break
        info = observed_information(table, thetas, weights, learn)
        free = np.ones(info.shape[0], dtype=bool)
        free[:k] = ~on_boundary(thetas)
        if not free.any():
            break
        try:
            factor = cho_factor(info[np.ix_(free, free)])
        except LinAlgError:
            break
        step = np.zeros(info.shape[0])
        step[free] = cho_solve(factor, score(table, thetas, weights, learn)[free])
        new_thetas = thetas + step[:k]
        new_weights = weights
        if learn and k > 1:
            head = weights[:-1] + step[k:]
            new_weights = np.append(head, 1.0 - head.sum())
        inside = np.all((new_thetas > EPS) & (new_thetas < 1 - EPS)) and np.all(new_weights > 0)
        if not inside:
            break
        new_ll = float(log_likelihood(table, new_thetas[None, :], new_weights[None, :])[0])
        if not new_ll > ll:
            break
        thetas, weights, ll = new_thetas, new_weights, new_ll
    return thetas, weights, ll
