"""Score and observed information of the mixture log-likelihood for R runs at once.

Coordinates: the K thetas, then (when the weights are learned and K > 1) the first K - 1
weights, the last being one minus the others; P = 2K - 1 or K parameters.
"""

from __future__ import annotations

import numpy as np

from shared.estimation._counts import CountTable


def score_and_hessian(
    table: CountTable, resp: np.ndarray, thetas: np.ndarray, weights: np.ndarray, learn: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient (R, P) and Hessian (R, P, P) of the log-likelihood.

    Shapes: ``resp`` (R, K, M) are the posteriors at ``thetas``, ``weights`` (R, K).
    """
    k = thetas.shape[1]
    h, t = table.design_t[0], table.design_t[1]  # (M,)
    c = table.counts
    th = thetas[:, :, None]
    s = h / th - t / (1 - th)  # d log f / d theta, (R, K, M)
    curv = -h / th**2 - t / (1 - th) ** 2  # d2 log f / d theta2
    rs = resp * s
    parts = [rs]
    if learn and k > 1:
        parts.append(resp[:, :-1] / weights[:, :-1, None] - resp[:, -1:] / weights[:, -1:, None])
    g = np.concatenate(parts, axis=1)  # (R, P, M): each pair's score vector
    # Hessian of log p_i is (d2 p_i / p_i) - g g^T; d2 p_i / p_i is sparse, added below.
    hess = -np.matmul(g * c, g.transpose(0, 2, 1))
    diag = np.arange(k)
    hess[:, diag, diag] += (resp * (s**2 + curv)) @ c
    a = rs @ c  # (R, K): the thetas' gradient
    if g.shape[1] > k:
        j = np.arange(k - 1)
        hess[:, j, k + j] += a[:, :-1] / weights[:, :-1]
        hess[:, k - 1, k + j] -= (a[:, -1] / weights[:, -1])[:, None]
        hess[:, k:, :k] = hess[:, :k, k:].transpose(0, 2, 1)
    return g @ c, hess


def newton_steps(
    grad: np.ndarray, hess: np.ndarray, free: np.ndarray, damping: np.ndarray | None = None
) -> np.ndarray:
    """Newton steps (R, P) on the free parameters (mask (R, P)), NaN rows where undefined.

    Where the observed information over the free parameters is not positive definite
    (a saddle region far from a maximum), its eigenvalues are replaced by their absolute
    values, so the step still climbs along directions of negative curvature
    ("saddle-free" Newton); the caller keeps a step only if the likelihood rises.
    ``damping`` (R,), in units of each run's largest absolute eigenvalue, is added to
    every eigenvalue (Levenberg-Marquardt), shortening the step towards the gradient.
    """
    n_runs, p = grad.shape
    info = -hess
    fixed = ~free
    if fixed.any():
        info[fixed[:, :, None] | fixed[:, None, :]] = 0.0
        info[:, np.arange(p), np.arange(p)] += fixed
        grad = np.where(free, grad, 0.0)
    good = np.isfinite(info).all(axis=(1, 2)) & np.isfinite(grad).all(axis=1)
    if not good.all():
        steps = np.full((n_runs, p), np.nan)
        if good.any():
            damp = None if damping is None else damping[good]
            steps[good] = newton_steps(grad[good], -info[good], free[good], damp)
        return steps
    values, vectors = np.linalg.eigh(info)
    size = np.abs(values)
    scale = size.max(axis=1, keepdims=True)
    usable = (size > 1e-12 * scale).all(axis=1)
    if damping is not None:
        size += damping[:, None] * scale
    size[~usable] = 1.0
    coef = np.einsum("rpq,rp->rq", vectors, grad) / size
    steps = np.einsum("rpq,rq->rp", vectors, coef)
    steps[~usable] = np.nan
    return steps
