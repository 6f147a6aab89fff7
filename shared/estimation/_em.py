"""E-step, M-step and the batched EM loop (plain or SQUAREM-accelerated) for binomial mixtures.

Every function works on R runs (restarts) at once: the arrays are tiny (R x M x K with M
distinct pairs), so numpy's per-call overhead, not arithmetic, sets the speed, and one
array computation over all runs beats a Python loop of small ones.

Parameters are the thetas (each in [EPS, 1 - EPS]) and the mixing weights (on the simplex,
each at least ``WEIGHT_FLOOR``). A run has converged when, after an iteration, both

* the log-likelihood rose by less than ``tol`` (never below its rounding noise), and
* the largest component of the projected gradient is below ``gtol``. The gradient is taken
  in the unconstrained coordinates logit(theta_k) and log(weight_k) (weights normalised
  over the free ones), where it reads as a count: expected heads minus theta_k times the
  expected flips of coin k, and expected draws of coin k minus weight_k times the draws.
  A theta on EPS or 1 - EPS, or a weight at the floor, is not free: it only has to have a
  gradient pointing out of the box (so EM would not move it back inside).

Plain EM: one iteration is one M-step and the E-step at its result. SQUAREM (Varadhan &
Roland 2008, scheme S3 with the step-length adaptation of the R package SQUAREM): one
iteration is one cycle of two EM steps, the extrapolation x0 + 2 a r + a^2 v from them
(r = x1 - x0, v = x2 - 2 x1 + x0, a = |r| / |v| clipped to [1, step_max]) projected into the
box, and one stabilising EM step from the extrapolated point; when that ends below the
likelihood of x1, the cycle falls back to the plain EM point x2. So the log-likelihood
never decreases from one iteration to the next, and an iteration costs three EM steps
(four on a fallback).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.estimation._counts import CountTable
from shared.estimation._newton import newton_steps, score_and_hessian

# Thetas are kept inside [EPS, 1 - EPS] so log(theta) and log(1 - theta) stay finite.
EPS = 1e-10
# Floor for a mixing weight, so an emptied component keeps a finite log-weight.
WEIGHT_FLOOR = 1e-300
_WEIGHT_FLOOR = WEIGHT_FLOOR
# A change below this many ulps of the log-likelihood is rounding noise, not progress.
_ULPS = 16 * np.finfo(np.float64).eps
# A weight at the floor counts as stationary if EM would grow it by less than this factor.
_FLOOR_SLACK = 1e-6
# From this iteration on, SQUAREM iterations end with a safeguarded Newton step.
_NEWTON_AFTER = 4
# SQUAREM's step-length bound starts at 1 and is multiplied or divided by this.
_STEP_FACTOR = 4.0


def e_step(
    table: CountTable, thetas: np.ndarray, log_weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior of each coin for each pair, and each run's total log-likelihood.

    Shapes: ``thetas`` and ``log_weights`` (R, K) -> responsibilities (R, K, M) and
    log-likelihoods (R,), including the binomial coefficients.
    """
    log_p = np.empty((thetas.shape[0], thetas.shape[1], 2))
    np.log(thetas, out=log_p[:, :, 0])
    np.log1p(-thetas, out=log_p[:, :, 1])
    joint = log_p @ table.design_t  # (R, K, M)
    joint += log_weights[:, :, None]
    # logsumexp over K by hand: scipy's costs far more than the arithmetic on a few pairs.
    # K sits in the middle axis so numpy reduces it with whole-row operations.
    top = joint.max(axis=1, keepdims=True)
    joint -= top
    np.exp(joint, out=joint)
    norm = joint.sum(axis=1, keepdims=True)
    joint /= norm
    log_norm = np.log(norm[:, 0, :]) + top[:, 0, :]  # (R, M)
    return joint, log_norm @ table.counts + table.total_log_coef


def m_step(
    table: CountTable, resp: np.ndarray, thetas: np.ndarray, weights: np.ndarray, learn: bool
) -> tuple[np.ndarray, np.ndarray]:
    """New thetas and weights from responsibilities.

    Shapes: ``resp`` (R, K, M), ``thetas`` and ``weights`` (R, K) -> thetas (R, K),
    weights (R, K). A component with no expected flips keeps its previous theta;
    ``learn=False`` keeps the weights as given.
    """
    return _maximise(table, resp @ table.stats_t, thetas, weights, learn)


def _maximise(
    table: CountTable, sums: np.ndarray, thetas: np.ndarray, weights: np.ndarray, learn: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The M-step from expected heads, flips and draws per coin, ``sums`` (R, K, 3)."""
    flips = sums[:, :, 1]
    new_thetas = np.divide(sums[:, :, 0], flips, out=thetas.copy(), where=flips > 0)
    np.clip(new_thetas, EPS, 1.0 - EPS, out=new_thetas)
    if not learn:
        return new_thetas, weights
    new_weights = sums[:, :, 2] / table.n_draws
    np.maximum(new_weights, WEIGHT_FLOOR, out=new_weights)
    return new_thetas, new_weights


def stationarity(
    table: CountTable, sums: np.ndarray, thetas: np.ndarray, weights: np.ndarray, learn: bool
) -> np.ndarray:
    """Largest projected-gradient component of each run (see the module docstring); (R,).

    Shapes: ``sums`` (R, K, 3) as in the M-step, ``thetas`` and ``weights`` (R, K).
    """
    g = sums[:, :, 0] - thetas * sums[:, :, 1]  # d loglik / d logit(theta)
    low, high = thetas <= EPS, thetas >= 1.0 - EPS
    g = np.where(low, np.maximum(g, 0.0), np.where(high, np.maximum(-g, 0.0), np.abs(g)))
    worst = g.max(axis=1)
    if not learn or thetas.shape[1] == 1:
        return worst
    draws = sums[:, :, 2]
    free = weights > WEIGHT_FLOOR
    # Lagrange multiplier of sum(w) = 1 over the free weights: draws per unit of weight.
    rate = (draws * free).sum(axis=1) / (weights * free).sum(axis=1)  # (R,)
    gw = np.where(free, np.abs(draws - weights * rate[:, None]), 0.0)
    worst = np.maximum(worst, gw.max(axis=1))
    # A floored weight is stationary only if EM would not grow it.
    grows = ~free & (draws > weights * rate[:, None] * (1.0 + _FLOOR_SLACK))
    return np.where(grows.any(axis=1), np.inf, worst)


def em_map(
    table: CountTable, thetas: np.ndarray, weights: np.ndarray, learn: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One EM step from each run: the new thetas and weights (R, K), and the log-likelihood
    (R,) and expected heads, flips and draws per coin (R, K, 3) at the *given* point."""
    resp, ll = e_step(table, thetas, np.log(weights))
    sums = resp @ table.stats_t
    new_thetas, new_weights = _maximise(table, sums, thetas, weights, learn)
    return new_thetas, new_weights, ll, sums


def log_likelihood(table: CountTable, thetas: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Total log-likelihood of each run; shapes (R, K) -> (R,)."""
    return e_step(table, thetas, np.log(weights))[1]


@dataclass
class Runs:
    """State of R EM runs. Shapes: thetas, weights (R, K); the rest (R,).

    ``history`` is (T, R): each run's log-likelihood after each of its iterations, NaN
    once the run has stopped (``history[:n_iter[r], r]`` is run r's curve);
    ``theta_history`` (T, R, K) holds the thetas after each iteration likewise.
    ``gradient`` is :func:`stationarity` at the final point; ``n_steps`` counts EM steps.
    """

    thetas: np.ndarray
    weights: np.ndarray
    log_likelihood: np.ndarray
    gradient: np.ndarray
    n_iter: np.ndarray
    n_steps: np.ndarray
    converged: np.ndarray
    history: np.ndarray
    theta_history: np.ndarray


@dataclass
class _Batch:
    """The active runs: current point x0, its EM image x1, and per-run SQUAREM state."""

    index: np.ndarray
    th: np.ndarray
    w: np.ndarray
    th1: np.ndarray
    w1: np.ndarray
    ll: np.ndarray
    sums: np.ndarray
    step_max: np.ndarray
    steps: np.ndarray

    def keep(self, mask: np.ndarray) -> None:
        """Drop the runs where ``mask`` is False."""
        for name in ("index", "th", "w", "th1", "w1", "ll", "sums", "step_max", "steps"):
            setattr(self, name, getattr(self, name)[mask])


def run_em(
    table: CountTable,
    thetas: np.ndarray,
    weights: np.ndarray,
    *,
    learn: bool,
    tol: float,
    max_iter: int,
    gtol: float = 0.0,
    accelerate: bool = False,
) -> Runs:
    """Run EM from each row of ``thetas``/``weights`` (R, K) until converged or ``max_iter``.

    ``accelerate`` chooses SQUAREM over plain EM; the iteration and the stopping rule
    (``tol`` on the rise of the log-likelihood, ``gtol`` on the projected gradient) are
    defined in the module docstring. ``tol=0`` runs exactly ``max_iter`` iterations.
    Converged runs leave the batch so the rest iterate on smaller arrays.
    """
    n_runs, k = thetas.shape
    out = Runs(
        thetas=np.array(thetas, dtype=np.float64),
        weights=np.array(weights, dtype=np.float64),
        log_likelihood=np.empty(n_runs),
        gradient=np.empty(n_runs),
        n_iter=np.zeros(n_runs, dtype=np.int64),
        n_steps=np.zeros(n_runs, dtype=np.int64),
        converged=np.zeros(n_runs, dtype=bool),
        history=np.empty((0, n_runs)),
        theta_history=np.empty((0, n_runs, k)),
    )
    th, w = out.thetas.copy(), out.weights.copy()
    th1, w1, ll, sums = em_map(table, th, w, learn)
    ones = np.ones(n_runs)
    batch = _Batch(np.arange(n_runs), th, w, th1, w1, ll, sums, ones, ones.astype(np.int64))
    lls, thetas_rows = [], []
    step = _squarem_cycle if accelerate else _plain_step
    for iteration in range(1, max_iter + 1):
        previous = batch.ll
        step(table, batch, learn)
        if accelerate and iteration >= _NEWTON_AFTER:
            _newton_try(table, batch, learn)
        row = np.full(n_runs, np.nan)
        row[batch.index] = batch.ll
        lls.append(row)
        trow = np.full((n_runs, k), np.nan)
        trow[batch.index] = batch.th
        thetas_rows.append(trow)
        done = np.abs(batch.ll - previous) < _threshold(tol, batch.ll)
        if tol <= 0:
            done[:] = False
        if done.any():
            # The gradient is only needed where the log-likelihood has stopped rising.
            grad = stationarity(table, batch.sums[done], batch.th[done], batch.w[done], learn)
            done[done] = grad <= _gradient_threshold(gtol, table)
        if done.any():
            _finish(out, table, batch, done, iteration, learn, converged=True)
            batch.keep(~done)
            if batch.index.size == 0:
                break
    if batch.index.size:
        everyone = np.ones(batch.index.size, dtype=bool)
        _finish(out, table, batch, everyone, max_iter, learn, converged=False)
    out.history = np.array(lls).reshape(len(lls), n_runs)
    out.theta_history = np.array(thetas_rows).reshape(len(thetas_rows), n_runs, k)
    return out


def _finish(
    out: Runs,
    table: CountTable,
    batch: _Batch,
    which: np.ndarray,
    n_iter: int,
    learn: bool,
    converged: bool,
) -> None:
    """Copy the runs flagged in ``which`` from the batch into ``out``."""
    rows = batch.index[which]
    out.thetas[rows], out.weights[rows] = batch.th[which], batch.w[which]
    out.log_likelihood[rows] = batch.ll[which]
    out.gradient[rows] = stationarity(
        table, batch.sums[which], batch.th[which], batch.w[which], learn
    )
    out.n_iter[rows] = n_iter
    out.n_steps[rows] = batch.steps[which]
    out.converged[rows] = converged


def _plain_step(table: CountTable, batch: _Batch, learn: bool) -> None:
    """Move every run to its EM image, in place."""
    th2, w2, ll1, sums1 = em_map(table, batch.th1, batch.w1, learn)
    batch.th, batch.w, batch.th1, batch.w1 = batch.th1, batch.w1, th2, w2
    batch.ll, batch.sums = ll1, sums1
    batch.steps += 1


def _squarem_cycle(table: CountTable, batch: _Batch, learn: bool) -> None:
    """One SQUAREM iteration for every run, in place."""
    th0, w0, th1, w1 = batch.th, batch.w, batch.th1, batch.w1
    th2, w2, ll1, _ = em_map(table, th1, w1, learn)
    r_th, v_th = th1 - th0, th2 - 2.0 * th1 + th0
    r2, v2 = (r_th**2).sum(axis=1), (v_th**2).sum(axis=1)
    if learn:
        r_w, v_w = w1 - w0, w2 - 2.0 * w1 + w0
        r2 += (r_w**2).sum(axis=1)
        v2 += (v_w**2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.sqrt(r2 / v2)
    alpha = np.where(np.isfinite(alpha), alpha, batch.step_max)
    alpha = np.clip(alpha, 1.0, batch.step_max)
    a1, a2 = (2.0 * alpha)[:, None], (alpha**2)[:, None]
    th_x = np.clip(th0 + a1 * r_th + a2 * v_th, EPS, 1.0 - EPS)
    if learn:
        w_x = np.maximum(w0 + a1 * r_w + a2 * v_w, WEIGHT_FLOOR)
        w_x /= w_x.sum(axis=1, keepdims=True)
    else:
        w_x = w0
    th_new, w_new, _, _ = em_map(table, th_x, w_x, learn)
    th_next, w_next, ll_new, sums_new = em_map(table, th_new, w_new, learn)
    batch.steps += 3
    worse = ~(ll_new >= ll1)
    at_max = alpha >= batch.step_max
    if worse.any():
        # The safeguard: fall back to the plain EM point x2 and shrink the step bound.
        batch.steps += worse
        th3, w3, ll2, sums2 = em_map(table, th2[worse], w2[worse], learn)
        th_new[worse], w_new[worse], th_next[worse], w_next[worse] = th2[worse], w2[worse], th3, w3
        ll_new[worse], sums_new[worse] = ll2, sums2
        shrink = worse & at_max
        batch.step_max[shrink] = np.maximum(1.0, batch.step_max[shrink] / _STEP_FACTOR)
    grow = ~worse & at_max
    batch.step_max[grow] *= _STEP_FACTOR
    batch.th, batch.w, batch.th1, batch.w1 = th_new, w_new, th_next, w_next
    batch.ll, batch.sums = ll_new, sums_new


def _newton_try(table: CountTable, batch: _Batch, learn: bool) -> None:
    """A Newton step on the observed information from every run, kept where it raises the
    log-likelihood and stays inside the box (free parameters only; see the module docstring)."""
    th, w = batch.th, batch.w
    k = th.shape[1]
    resp, _ = e_step(table, th, np.log(w))
    grad, hess = score_and_hessian(table, resp, th, w, learn)
    free = np.ones(grad.shape, dtype=bool)
    free[:, :k] = (th > EPS) & (th < 1.0 - EPS)
    step = newton_steps(grad, hess, free)
    if grad.shape[1] > k:
        step[w.min(axis=1) <= 1e-9] = np.nan  # a weight near 0: Newton would cross it
    ok = np.isfinite(step).all(axis=1)
    if not ok.any():
        return
    new_th = th[ok] + step[ok, :k]
    if grad.shape[1] > k:
        head = w[ok, :-1] + step[ok, k:]
        new_w = np.column_stack((head, 1.0 - head.sum(axis=1)))
    else:
        new_w = w[ok]
    inside = ((new_th > EPS) & (new_th < 1.0 - EPS)).all(axis=1)
    inside &= (new_w > WEIGHT_FLOOR).all(axis=1)
    rows = np.flatnonzero(ok)[inside]
    if rows.size == 0:
        return
    new_th, new_w = new_th[inside], new_w[inside]
    th1, w1, ll, sums = em_map(table, new_th, new_w, learn)
    better = ll > batch.ll[rows]
    rows = rows[better]
    batch.th[rows], batch.w[rows] = new_th[better], new_w[better]
    batch.th1[rows], batch.w1[rows] = th1[better], w1[better]
    batch.ll[rows], batch.sums[rows] = ll[better], sums[better]
    batch.steps[rows] += 1


def _threshold(tol: float, ll: np.ndarray) -> float:
    """Convergence threshold per run: ``tol``, but never below the rounding noise of ``ll``."""
    if tol <= 0:
        return 0.0
    # All runs share the data, so their log-likelihoods have one magnitude.
    return max(tol, _ULPS * abs(float(ll[0])))


def _gradient_threshold(gtol: float, table: CountTable) -> float:
    """``gtol``, but never below the rounding noise of sums of heads and draws."""
    return max(gtol, 64 * np.finfo(np.float64).eps * (table.n_flips + table.n_draws))
