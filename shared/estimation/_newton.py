"""Score and observed information of the mixture log-likelihood for R runs at once.

Coordinates: the K thetas, then (when the weights are learned and K > 1) the first K - 1
weights, the last being one minus the others; P = 2K - 1 or K parameters.

Everything is built from each pair's score vector and the posterior sums of the M-step
(see ``CountTable.stats_t``), so a Newton step costs a few dozen numpy calls for all runs.
"""

from __future__ import annotations

import numpy as np

from shared.estimation._counts import CountTable


def score_and_information(
    table: CountTable,
    resp: np.ndarray,
    thetas: np.ndarray,
    weights: np.ndarray,
    learn: bool,
    sums: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient (R, P) and observed information (minus the Hessian, (R, P, P))."""
    n_runs, k, m = resp.shape
    if sums is None:
        sums = (resp.reshape(n_runs * k, m) @ table.stats_t).reshape(n_runs, k, -1)
    p = 2 * k - 1 if learn and k > 1 else k
    u = 1.0 - thetas
    u *= thetas  # theta (1 - theta), (R, K)
    # Each pair's score: resp (h - n theta) / u for the thetas, resp_j / w_j - resp_K / w_K
    # for the weights; the information is sum_m c g g^T minus the second derivatives.
    g = np.empty((n_runs, p, m))
    g_th = g[:, :k]
    np.multiply(table.design_n, thetas[:, :, None], out=g_th)
    np.subtract(table.design_t[0], g_th, out=g_th)
    g_th *= resp
    g_th /= u[:, :, None]
    if p > k:
        share = resp / weights[:, :, None]
        np.subtract(share[:, :-1], share[:, -1:], out=g[:, k:])
    gc = g * table.counts
    info = gc @ g.transpose(0, 2, 1)
    grad = np.add.reduce(gc, 2)
    # d2 log f / d theta2 + (d log f / d theta)^2 = (h(h-1) - 2h(n-1) theta + n(n-1) theta^2) / u^2
    curv = sums[:, :, 5] * thetas
    curv -= sums[:, :, 4]
    curv *= thetas
    curv += sums[:, :, 3]
    u *= u
    curv /= u
    flat = info.reshape(n_runs, p * p)
    flat[:, : k * (p + 1) : p + 1] -= curv
    if p > k:
        # d2 log p / d theta_k d w_j = (score of theta_k) / w_k (delta_kj - delta_kK).
        q = grad[:, :k] / weights
        flat[:, k : k + (k - 1) * (p + 1) : p + 1] -= q[:, :-1]
        info[:, k - 1, k:] += q[:, -1:]
        info[:, k:, :k] = info[:, :k, k:].transpose(0, 2, 1)
    return grad, info


def newton_steps(
    grad: np.ndarray, hess: np.ndarray, free: np.ndarray | None, damping: np.ndarray | None = None
) -> np.ndarray:
    """Newton steps (R, P) on the free parameters (mask (R, P), None when all are free),
    NaN rows where undefined."""
    return steps_from_information(grad, -hess, free, damping)


def steps_from_information(
    grad: np.ndarray, info: np.ndarray, free: np.ndarray | None, damping: np.ndarray | None = None
) -> np.ndarray:
    """:func:`newton_steps` from the observed information ``info`` (R, P, P), which it may
    overwrite.

    Where the observed information over the free parameters is not positive definite
    (a saddle region far from a maximum), its eigenvalues are replaced by their absolute
    values, so the step still climbs along directions of negative curvature
    ("saddle-free" Newton); the caller keeps a step only if the likelihood rises.
    ``damping`` (R,), in units of each run's largest absolute eigenvalue, is added to
    every eigenvalue (Levenberg-Marquardt), shortening the step towards the gradient.
    A run whose information is singular (an eigenvalue below 1e-12 of the largest) gets
    a NaN step. Undamped steps with every parameter free come from a Cholesky factor and a
    solve when the batch allows it (see :func:`_steps_if_definite`).
    """
    n_runs, p = grad.shape
    if damping is None and free is None:
        steps = _steps_if_definite(grad, info)
        if steps is not None:
            return steps
    if free is not None and not free.all():
        fixed = ~free
        info[fixed[:, :, None] | fixed[:, None, :]] = 0.0
        info[:, np.arange(p), np.arange(p)] += fixed
        grad = np.where(free, grad, 0.0)
    # One sum tells whether everything is finite (inf - inf and NaN both propagate).
    if not np.isfinite(np.add.reduce(info, None) + np.add.reduce(grad, None)):
        good = np.isfinite(info).all(axis=(1, 2)) & np.isfinite(grad).all(axis=1)
        steps = np.full((n_runs, p), np.nan)
        if good.any():
            damp = None if damping is None else damping[good]
            steps[good] = steps_from_information(grad[good], info[good], None, damp)
        return steps
    values, vectors = np.linalg.eigh(info)
    size = np.abs(values, out=values)
    scale = size.max(axis=1, keepdims=True)
    usable = (size > 1e-12 * scale).all(axis=1)
    if damping is not None:
        size += damping[:, None] * scale
    all_usable = usable.all()
    if not all_usable:
        size[~usable] = 1.0
    coef = (grad[:, None, :] @ vectors)[:, 0] / size
    steps = (vectors @ coef[:, :, None])[:, :, 0]
    if not all_usable:
        steps[~usable] = np.nan
    return steps


def _steps_if_definite(grad: np.ndarray, info: np.ndarray) -> np.ndarray | None:
    """Undamped Newton steps info^-1 grad (R, P) when every run's information is positive
    definite and well conditioned, else None.

    Near a maximum this is the usual case, and a Cholesky factor and a solve cost less
    than the eigendecomposition they replace (the steps agree: every eigenvalue is
    positive). The squared pivots of the factor lie between the smallest and the largest
    eigenvalue, so a spread of more than 1e12 among them (or a NaN) leaves the batch to the
    eigendecomposition, which makes a singular run's step NaN; a nearly singular run the
    pivots miss gets its solve step, kept, like any step, only if the likelihood does not
    fall.
    """
    try:
        lower = np.linalg.cholesky(info)
    except np.linalg.LinAlgError:
        return None
    pivots = lower.reshape(lower.shape[0], -1)[:, :: lower.shape[1] + 1]
    np.multiply(pivots, pivots, out=pivots)
    if not np.minimum.reduce(pivots, None) > 1e-12 * np.maximum.reduce(pivots, None):
        return None
    try:
        return np.linalg.solve(info, grad[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:
        return None
