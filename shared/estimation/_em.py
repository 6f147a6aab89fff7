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
likelihood of x1, the cycle falls back to the plain EM point x2. From iteration
``newton_after`` on, the cycle is followed by a damped Newton step on the observed
information (see :func:`_newton_try`), kept only where it raises the likelihood; once every
active run's last Newton step was kept undamped, iterations are that Newton step alone
(its quadratic convergence needs no EM steps), until one is refused. So the log-likelihood
never decreases from one iteration to the next, and an iteration costs at most three EM
steps (four on a fallback) and one E-step for Newton.
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
# From this iteration on, SQUAREM iterations end with a safeguarded Newton step (a run
# continuing a screen of at least this many EM steps tries Newton alone first).
NEWTON_AFTER = 4
# SQUAREM's step-length bound starts at 1 and is multiplied or divided by this.
_STEP_FACTOR = 4.0
# Newton damping, relative to a run's largest curvature: 0 after successes, at least
# _DAMPING_MIN after a refused step, and multiplied or divided by _DAMPING_FACTOR.
_DAMPING_MIN = 1e-4
_DAMPING_FACTOR = 4.0


def e_step(
    table: CountTable, thetas: np.ndarray, log_weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior of each coin for each pair, and each run's total log-likelihood.

    Shapes: ``thetas`` and ``log_weights`` (R, K) -> responsibilities (R, K, M) and
    log-likelihoods (R,), including the binomial coefficients.
    """
    logs = np.empty((thetas.shape[0], thetas.shape[1], 3))
    logs[:, :, 2] = log_weights
    return _posterior(table, thetas, logs)


def _posterior(
    table: CountTable, thetas: np.ndarray, logs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`e_step` with the log-weights already in ``logs[:, :, 2]`` (R, K, 3)."""
    np.log(thetas, out=logs[:, :, 0])
    np.log1p(-thetas, out=logs[:, :, 1])
    joint = logs @ table.design_t  # (R, K, M): log theta^h (1-theta)^t w
    # logsumexp over K by hand: scipy's costs far more than the arithmetic on a few pairs.
    top = joint.max(axis=1)  # (R, M)
    joint -= top[:, None, :]
    np.exp(joint, out=joint)
    norm = joint.sum(axis=1)
    joint /= norm[:, None, :]
    np.log(norm, out=norm)
    norm += top
    return joint, norm @ table.counts + table.total_log_coef


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
    # Two ufuncs: np.clip's Python wrapper costs more than the clipping on tiny arrays.
    np.maximum(new_thetas, EPS, out=new_thetas)
    np.minimum(new_thetas, 1.0 - EPS, out=new_thetas)
    if not learn:
        return new_thetas, weights
    new_weights = sums[:, :, 2] * (1.0 / table.n_draws)
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
    new_thetas, new_weights, ll, sums, _ = _em_map(table, thetas, weights, learn)
    return new_thetas, new_weights, ll, sums


def _em_map(
    table: CountTable, thetas: np.ndarray, weights: np.ndarray, learn: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`em_map`, also returning the responsibilities (R, K, M) at the given point."""
    logs = np.empty((thetas.shape[0], thetas.shape[1], 3))
    np.log(weights, out=logs[:, :, 2])
    resp, ll = _posterior(table, thetas, logs)
    sums = resp @ table.stats_t
    new_thetas, new_weights = _maximise(table, sums, thetas, weights, learn)
    return new_thetas, new_weights, ll, sums, resp


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


_BATCH_FIELDS = (
    "index",
    "th",
    "w",
    "th1",
    "w1",
    "ll",
    "sums",
    "resp",
    "step_max",
    "steps",
    "damping",
    "full_newton",
)


@dataclass
class _Batch:
    """The active runs: current point x0 with its log-likelihood, sums and posteriors, its
    EM image x1, and per-run SQUAREM step bound, EM-step count, Newton damping, and whether
    the last Newton step was kept undamped."""

    index: np.ndarray
    th: np.ndarray
    w: np.ndarray
    th1: np.ndarray
    w1: np.ndarray
    ll: np.ndarray
    sums: np.ndarray
    resp: np.ndarray
    step_max: np.ndarray
    steps: np.ndarray
    damping: np.ndarray
    full_newton: np.ndarray

    def keep(self, mask: np.ndarray) -> None:
        """Drop the runs where ``mask`` is False."""
        for name in _BATCH_FIELDS:
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
    newton_after: int = NEWTON_AFTER,
) -> Runs:
    """Run EM from each row of ``thetas``/``weights`` (R, K) until converged or ``max_iter``.

    ``accelerate`` chooses SQUAREM over plain EM, with Newton steps from iteration
    ``newton_after`` on; the iteration and the stopping rule (``tol`` on the rise of the
    log-likelihood, ``gtol`` on the projected gradient) are defined in the module docstring.
    ``tol=0`` runs exactly ``max_iter`` iterations. Converged runs leave the batch so the
    rest iterate on smaller arrays.
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
    th1, w1, ll, sums, resp = _em_map(table, th, w, learn)
    batch = _Batch(
        np.arange(n_runs),
        th,
        w,
        th1,
        w1,
        ll,
        sums,
        resp,
        np.ones(n_runs),
        np.ones(n_runs, dtype=np.int64),
        np.zeros(n_runs),
        # Runs that start with Newton (continuing a screen) try it alone first.
        np.full(n_runs, accelerate and newton_after <= 1),
    )
    # (index, log-likelihoods, thetas) of the active runs after each iteration; these
    # arrays are never written to after they are recorded.
    record: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    step = _squarem_cycle if accelerate else _plain_step
    gradient_threshold = _gradient_threshold(gtol, table)
    for iteration in range(1, max_iter + 1):
        previous = batch.ll
        newton = accelerate and iteration >= newton_after
        # Once every run's last Newton step was a full, kept one, Newton alone converges
        # quadratically: the EM steps of a SQUAREM cycle would only add cost.
        if not (newton and batch.full_newton.all()):
            step(table, batch, learn)
        if newton:
            _newton_try(table, batch, learn)
        record.append((batch.index, batch.ll, batch.th))
        if tol <= 0:
            continue
        done = np.abs(batch.ll - previous) < _threshold(tol, batch.ll)
        if not done.any():
            continue
        # The gradient is only needed where the log-likelihood has stopped rising.
        which = np.flatnonzero(done)
        grad = stationarity(table, batch.sums[which], batch.th[which], batch.w[which], learn)
        small = grad <= gradient_threshold
        if not small.any():
            continue
        done[which[~small]] = False
        _finish(out, batch, done, grad[small], iteration, converged=True)
        if done.all():
            batch.keep(~done)
            break
        batch.keep(~done)
    if batch.index.size:
        grad = stationarity(table, batch.sums, batch.th, batch.w, learn)
        _finish(out, batch, np.ones(batch.index.size, dtype=bool), grad, max_iter, converged=False)
    out.history = np.full((len(record), n_runs), np.nan)
    out.theta_history = np.full((len(record), n_runs, k), np.nan)
    for t, (index, lls, ths) in enumerate(record):
        out.history[t, index] = lls
        out.theta_history[t, index] = ths
    return out


def _finish(
    out: Runs, batch: _Batch, which: np.ndarray, gradient: np.ndarray, n_iter: int, converged: bool
) -> None:
    """Copy the runs flagged in ``which`` (with their final ``gradient``) into ``out``."""
    rows = batch.index[which]
    out.thetas[rows], out.weights[rows] = batch.th[which], batch.w[which]
    out.log_likelihood[rows] = batch.ll[which]
    out.gradient[rows] = gradient
    out.n_iter[rows] = n_iter
    out.n_steps[rows] = batch.steps[which]
    out.converged[rows] = converged


def _plain_step(table: CountTable, batch: _Batch, learn: bool) -> None:
    """Move every run to its EM image, in place."""
    th2, w2, ll1, sums1, resp1 = _em_map(table, batch.th1, batch.w1, learn)
    batch.th, batch.w, batch.th1, batch.w1 = batch.th1, batch.w1, th2, w2
    batch.ll, batch.sums, batch.resp = ll1, sums1, resp1
    batch.steps += 1


def _squarem_cycle(table: CountTable, batch: _Batch, learn: bool) -> None:
    """One SQUAREM iteration for every run, in place."""
    th0, w0, th1, w1 = batch.th, batch.w, batch.th1, batch.w1
    th2, w2, ll1, _, _ = _em_map(table, th1, w1, learn)
    r_th = th1 - th0
    v_th = th2 - th1
    v_th -= r_th
    r2, v2 = np.einsum("rk,rk->r", r_th, r_th), np.einsum("rk,rk->r", v_th, v_th)
    if learn:
        r_w = w1 - w0
        v_w = w2 - w1
        v_w -= r_w
        r2 += np.einsum("rk,rk->r", r_w, r_w)
        v2 += np.einsum("rk,rk->r", v_w, v_w)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.sqrt(r2 / v2)
    alpha[~np.isfinite(alpha)] = np.inf
    np.minimum(alpha, batch.step_max, out=alpha)
    np.maximum(alpha, 1.0, out=alpha)
    a1, a2 = (2.0 * alpha)[:, None], (alpha * alpha)[:, None]
    th_x = th0 + a1 * r_th + a2 * v_th
    np.maximum(th_x, EPS, out=th_x)
    np.minimum(th_x, 1.0 - EPS, out=th_x)
    if learn:
        w_x = w0 + a1 * r_w + a2 * v_w
        np.maximum(w_x, WEIGHT_FLOOR, out=w_x)
        w_x /= w_x.sum(axis=1, keepdims=True)
    else:
        w_x = w0
    th_new, w_new, _, _, _ = _em_map(table, th_x, w_x, learn)
    th_next, w_next, ll_new, sums_new, resp_new = _em_map(table, th_new, w_new, learn)
    batch.steps += 3
    worse = ~(ll_new >= ll1)
    at_max = alpha >= batch.step_max
    if worse.any():
        # The safeguard: fall back to the plain EM point x2 and shrink the step bound.
        batch.steps += worse
        th3, w3, ll2, sums2, resp2 = _em_map(table, th2[worse], w2[worse], learn)
        th_new[worse], w_new[worse], th_next[worse], w_next[worse] = th2[worse], w2[worse], th3, w3
        ll_new[worse], sums_new[worse], resp_new[worse] = ll2, sums2, resp2
        shrink = worse & at_max
        batch.step_max[shrink] = np.maximum(1.0, batch.step_max[shrink] / _STEP_FACTOR)
        at_max &= ~worse
    batch.step_max[at_max] *= _STEP_FACTOR
    batch.th, batch.w, batch.th1, batch.w1 = th_new, w_new, th_next, w_next
    batch.ll, batch.sums, batch.resp = ll_new, sums_new, resp_new


def _newton_try(table: CountTable, batch: _Batch, learn: bool) -> None:
    """A damped Newton step on the observed information from every run, kept where it
    raises the log-likelihood and stays inside the box (free parameters only; see the
    module docstring).

    The damping (Levenberg-Marquardt, in units of each run's largest curvature) shrinks
    after a kept step and grows after a refused one, so on a flat, curved ridge where the
    full step overshoots, the next tries are shorter instead of being refused every time.
    """
    th, w = batch.th, batch.w
    k = th.shape[1]
    grad, hess = score_and_hessian(table, batch.resp, th, w, learn)
    free = np.ones(grad.shape, dtype=bool)
    free[:, :k] = (th > EPS) & (th < 1.0 - EPS)
    step = newton_steps(grad, hess, free, batch.damping)
    if grad.shape[1] > k:
        step[w.min(axis=1) <= 1e-9] = np.nan  # a weight near 0: Newton would cross it
    ok = np.isfinite(step).all(axis=1)
    new_th = th + step[:, :k]
    if grad.shape[1] > k:
        head = w[:, :-1] + step[:, k:]
        new_w = np.concatenate((head, 1.0 - head.sum(axis=1, keepdims=True)), axis=1)
    else:
        new_w = w
    # The box is closed: a theta held on EPS or 1 - EPS (not free) does not move.
    ok &= ((new_th >= EPS) & (new_th <= 1.0 - EPS)).all(axis=1)
    ok &= (new_w > WEIGHT_FLOOR).all(axis=1)
    rows = np.flatnonzero(ok)
    better = np.zeros(ok.shape, dtype=bool)
    if rows.size:
        th1, w1, ll, sums, resp = _em_map(table, new_th[rows], new_w[rows], learn)
        gain = ll > batch.ll[rows]
        better[rows] = gain
        rows = rows[gain]
        batch.th[rows], batch.w[rows] = new_th[rows], new_w[rows]
        batch.th1[rows], batch.w1[rows] = th1[gain], w1[gain]
        batch.ll[rows], batch.sums[rows], batch.resp[rows] = ll[gain], sums[gain], resp[gain]
        batch.steps[rows] += 1
    batch.full_newton = better & (batch.damping == 0.0)
    batch.damping[better] *= 1.0 / _DAMPING_FACTOR
    batch.damping[batch.damping < _DAMPING_MIN] = 0.0
    batch.damping[~better] = np.maximum(batch.damping[~better] * _DAMPING_FACTOR, _DAMPING_MIN)


def _threshold(tol: float, ll: np.ndarray) -> float:
    """Convergence threshold per run: ``tol``, but never below the rounding noise of ``ll``."""
    if tol <= 0:
        return 0.0
    # All runs share the data, so their log-likelihoods have one magnitude.
    return max(tol, _ULPS * abs(float(ll[0])))


def _gradient_threshold(gtol: float, table: CountTable) -> float:
    """``gtol``, but never below the rounding noise of sums of heads and draws."""
    return max(gtol, 64 * np.finfo(np.float64).eps * (table.n_flips + table.n_draws))
