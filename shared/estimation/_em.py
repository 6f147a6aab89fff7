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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from shared.estimation._counts import CountTable
from shared.estimation._newton import score_and_information, steps_from_information

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
    """The M-step from the posterior sums ``sums`` (R, K, 6) (expected heads, flips and
    draws per coin first)."""
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

    Shapes: ``sums`` (R, K, 6) as in the M-step, ``thetas`` and ``weights`` (R, K).
    """
    g = thetas * sums[:, :, 1]
    np.subtract(sums[:, :, 0], g, out=g)  # d loglik / d logit(theta)
    low, high = thetas <= EPS, thetas >= 1.0 - EPS
    if (low | high).any():
        g = np.where(low, np.maximum(g, 0.0), np.where(high, np.maximum(-g, 0.0), np.abs(g)))
    else:
        np.abs(g, out=g)
    worst = g.max(axis=1)
    if not learn or thetas.shape[1] == 1:
        return worst
    draws = sums[:, :, 2]
    free = weights > WEIGHT_FLOOR
    if free.all():
        # As below, with every weight free.
        gw = weights * (draws.sum(axis=1) / weights.sum(axis=1))[:, None]
        np.subtract(draws, gw, out=gw)
        np.abs(gw, out=gw)
        return np.maximum(worst, gw.max(axis=1), out=worst)
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
    (R,) and posterior sums (R, K, 6; expected heads, flips and draws per coin first) at
    the *given* point."""
    new_thetas, new_weights, ll, sums, _ = _em_map(table, thetas, weights, learn)
    return new_thetas, new_weights, ll, sums


def _em_map(
    table: CountTable, thetas: np.ndarray, weights: np.ndarray, learn: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`em_map`, also returning the responsibilities (R, K, M) at the given point."""
    ll, sums, resp = _expect(table, thetas, weights)
    new_thetas, new_weights = _maximise(table, sums, thetas, weights, learn)
    return new_thetas, new_weights, ll, sums, resp


def _expect(
    table: CountTable, thetas: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-likelihoods (R,), posterior sums (R, K, 6) and posteriors (R, K, M) at a point."""
    logs = np.empty((thetas.shape[0], thetas.shape[1], 3))
    np.log(weights, out=logs[:, :, 2])
    resp, ll = _posterior(table, thetas, logs)
    return ll, resp @ table.stats_t, resp


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

    def select(self, index: np.ndarray) -> Runs:
        """The runs at ``index``, as a new :class:`Runs`."""
        return Runs(
            thetas=self.thetas[index],
            weights=self.weights[index],
            log_likelihood=self.log_likelihood[index],
            gradient=self.gradient[index],
            n_iter=self.n_iter[index],
            n_steps=self.n_steps[index],
            converged=self.converged[index],
            history=self.history[:, index],
            theta_history=self.theta_history[:, index],
        )


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
    EM image x1 (None after a Newton step, until a SQUAREM cycle needs it), and per-run
    SQUAREM step bound, EM-step count, Newton damping, and whether the last Newton step
    was kept undamped.

    Arrays are replaced, never written to in place, once the iteration has recorded them.
    """

    index: np.ndarray
    th: np.ndarray
    w: np.ndarray
    th1: np.ndarray | None
    w1: np.ndarray | None
    ll: np.ndarray
    sums: np.ndarray
    resp: np.ndarray
    step_max: np.ndarray
    steps: np.ndarray
    damping: np.ndarray
    full_newton: np.ndarray

    def keep(self, rows: np.ndarray) -> None:
        """Keep only the runs selected by ``rows`` (a mask or indices), in that order."""
        for name in _BATCH_FIELDS:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value[rows])

    def image(self, table: CountTable, learn: bool) -> tuple[np.ndarray, np.ndarray]:
        """The EM image x1 of the current point, computed from its sums when missing."""
        if self.th1 is None or self.w1 is None:
            self.th1, self.w1 = _maximise(table, self.sums, self.th, self.w, learn)
        return self.th1, self.w1

    def restart(self, full_newton: bool) -> None:
        """Fresh SQUAREM and Newton state (and step counts) for a continuation."""
        n_runs = self.index.size
        self.index = np.arange(n_runs)
        self.step_max = np.ones(n_runs)
        self.steps = np.zeros(n_runs, dtype=np.int64)
        self.damping = np.zeros(n_runs)
        self.full_newton = np.full(n_runs, full_newton)


def _start(
    table: CountTable, thetas: np.ndarray, weights: np.ndarray, learn: bool, full_newton: bool
) -> _Batch:
    """A batch of runs at the given starts (R, K), with their E-step and EM image."""
    n_runs = thetas.shape[0]
    th1, w1, ll, sums, resp = _em_map(table, thetas, weights, learn)
    return _Batch(
        np.arange(n_runs),
        thetas,
        weights,
        th1,
        w1,
        ll,
        sums,
        resp,
        np.ones(n_runs),
        np.ones(n_runs, dtype=np.int64),
        np.zeros(n_runs),
        np.full(n_runs, full_newton),
    )


def _empty_runs(thetas: np.ndarray, weights: np.ndarray) -> Runs:
    """Runs at the given starts (R, K), none of them finished yet."""
    n_runs = thetas.shape[0]
    return Runs(
        thetas=thetas.copy(),
        weights=weights.copy(),
        log_likelihood=np.empty(n_runs),
        gradient=np.full(n_runs, np.nan),
        n_iter=np.zeros(n_runs, dtype=np.int64),
        n_steps=np.zeros(n_runs, dtype=np.int64),
        converged=np.zeros(n_runs, dtype=bool),
        history=np.empty((0, n_runs)),
        theta_history=np.empty((0, n_runs, thetas.shape[1])),
    )


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
    thetas = np.array(thetas, dtype=np.float64)
    weights = np.array(weights, dtype=np.float64)
    out = _empty_runs(thetas, weights)
    batch = _start(table, thetas, weights, learn, accelerate and newton_after <= 1)
    settings = {"learn": learn, "tol": tol, "gtol": gtol, "accelerate": accelerate}
    record = _iterate(table, batch, out, max_iter=max_iter, newton_after=newton_after, **settings)
    _stop(table, batch, out, max_iter, learn)
    _set_histories(out, record)
    return out


def run_screened(
    table: CountTable,
    thetas: np.ndarray,
    weights: np.ndarray,
    *,
    choose: Callable[[Runs], np.ndarray],
    screen_iter: int,
    learn: bool,
    tol: float,
    max_iter: int,
    gtol: float = 0.0,
    accelerate: bool = False,
) -> tuple[Runs, np.ndarray]:
    """Screen all starts (R, K) with ``screen_iter`` plain EM steps, keep the runs
    ``choose(screen)`` picks, and run those on to convergence or ``max_iter`` iterations
    in all; returns the chosen runs and their indices among the starts.

    The continuation picks up each chosen run where the screen left it (its E-step and EM
    image included) and counts iterations from the start of the screen; its Newton steps
    begin at iteration ``NEWTON_AFTER`` of the whole run, so after a screen at least that
    long it tries Newton alone first. Equivalent to :func:`run_em` on the chosen starts
    with a plain-EM prefix.
    """
    thetas = np.array(thetas, dtype=np.float64)
    weights = np.array(weights, dtype=np.float64)
    settings = {"learn": learn, "tol": tol, "gtol": gtol}
    screen_iter = min(screen_iter, max_iter)
    screen = _empty_runs(thetas, weights)
    batch = _start(table, thetas, weights, learn, False)
    record = _iterate(
        table, batch, screen, max_iter=screen_iter, accelerate=False, newton_after=1, **settings
    )
    # The ranking needs every run's point and log-likelihood, not its gradient yet.
    screen.thetas[batch.index], screen.weights[batch.index] = batch.th, batch.w
    screen.log_likelihood[batch.index] = batch.ll
    screen.n_iter[batch.index] = screen_iter
    screen.n_steps[batch.index] = batch.steps
    _set_histories(screen, record)
    chosen = choose(screen)
    runs = screen.select(chosen)
    # Rows of the still active chosen runs in the screen's batch (its index is sorted).
    open_ = np.flatnonzero(~runs.converged)
    batch.keep(np.searchsorted(batch.index, chosen[open_]))
    if max_iter <= screen_iter or not open_.size:
        if open_.size:
            runs.gradient[open_] = stationarity(table, batch.sums, batch.th, batch.w, learn)
        return runs, chosen
    newton_after = max(1, NEWTON_AFTER - screen_iter)
    batch.restart(full_newton=accelerate and newton_after <= 1)
    more = _empty_runs(batch.th, batch.w)
    n_more = max_iter - screen_iter
    record = _iterate(
        table,
        batch,
        more,
        max_iter=n_more,
        accelerate=accelerate,
        newton_after=newton_after,
        **settings,
    )
    _stop(table, batch, more, n_more, learn)
    _set_histories(more, record)
    _extend(runs, open_, more)
    return runs, chosen


def _iterate(
    table: CountTable,
    batch: _Batch,
    out: Runs,
    *,
    learn: bool,
    tol: float,
    gtol: float,
    max_iter: int,
    accelerate: bool,
    newton_after: int,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Iterate the runs in ``batch`` up to ``max_iter`` times, moving converged runs into
    ``out``; returns (index, log-likelihoods, thetas) of the active runs after each
    iteration. Runs still active at the end stay in ``batch``."""
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
        if done.all():
            which = None
            grad = stationarity(table, batch.sums, batch.th, batch.w, learn)
        else:
            which = np.flatnonzero(done)
            grad = stationarity(table, batch.sums[which], batch.th[which], batch.w[which], learn)
        small = grad <= gradient_threshold
        if not small.any():
            continue
        if not small.all():
            if which is None:
                done = small
            else:
                done[which[~small]] = False
            grad = grad[small]
        _finish(out, batch, done, grad, iteration, converged=True)
        if done.all():
            batch.keep(np.zeros(done.size, dtype=bool))
            break
        batch.keep(~done)
    return record


def _stop(table: CountTable, batch: _Batch, out: Runs, n_iter: int, learn: bool) -> None:
    """Move the runs still in ``batch`` into ``out`` as not converged after ``n_iter``."""
    if batch.index.size:
        grad = stationarity(table, batch.sums, batch.th, batch.w, learn)
        _finish(out, batch, np.ones(batch.index.size, dtype=bool), grad, n_iter, converged=False)


def _set_histories(out: Runs, record: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Fill ``out.history`` and ``out.theta_history`` from the iteration record."""
    n_runs, k = out.thetas.shape
    out.history = np.full((len(record), n_runs), np.nan)
    out.theta_history = np.full((len(record), n_runs, k), np.nan)
    for t, (index, lls, ths) in enumerate(record):
        out.history[t, index] = lls
        out.theta_history[t, index] = ths


def _extend(runs: Runs, which: np.ndarray, more: Runs) -> None:
    """Append the continuation ``more`` of runs ``which`` to ``runs`` in place."""
    runs.thetas[which] = more.thetas
    runs.weights[which] = more.weights
    runs.log_likelihood[which] = more.log_likelihood
    runs.gradient[which] = more.gradient
    runs.converged[which] = more.converged
    # Runs that converged during screening have NaN past their n_iter; others continue.
    n_old, n_runs = runs.history.shape
    history = np.full((n_old + more.history.shape[0], n_runs), np.nan)
    history[:n_old] = runs.history
    history[n_old:, which] = more.history
    runs.history = history
    theta_history = np.full((history.shape[0], *runs.theta_history.shape[1:]), np.nan)
    theta_history[:n_old] = runs.theta_history
    theta_history[n_old:, which] = more.theta_history
    runs.theta_history = theta_history
    runs.n_iter[which] += more.n_iter
    runs.n_steps[which] += more.n_steps


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
    """Move every run to its EM image."""
    th1, w1 = batch.image(table, learn)
    th2, w2, ll1, sums1, resp1 = _em_map(table, th1, w1, learn)
    batch.th, batch.w, batch.th1, batch.w1 = th1, w1, th2, w2
    batch.ll, batch.sums, batch.resp = ll1, sums1, resp1
    batch.steps = batch.steps + 1


def _squarem_cycle(table: CountTable, batch: _Batch, learn: bool) -> None:
    """One SQUAREM iteration for every run."""
    th0, w0 = batch.th, batch.w
    th1, w1 = batch.image(table, learn)
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
    # alpha = sqrt(r2 / v2) clipped to [1, step_max]; v2 = 0 (a fixed point) means step_max.
    # Comparing squares avoids the division by zero and its np.errstate context.
    cap = batch.step_max
    alpha = np.where(r2 >= v2 * (cap * cap), cap, 1.0)
    inside = (r2 < v2 * (cap * cap)) & (r2 > v2)
    if inside.any():
        alpha[inside] = np.sqrt(r2[inside] / v2[inside])
    a1, a2 = (2.0 * alpha)[:, None], (alpha * alpha)[:, None]
    th_x = a1 * r_th
    th_x += th0
    th_x += a2 * v_th
    np.maximum(th_x, EPS, out=th_x)
    np.minimum(th_x, 1.0 - EPS, out=th_x)
    if learn:
        w_x = a1 * r_w
        w_x += w0
        w_x += a2 * v_w
        np.maximum(w_x, WEIGHT_FLOOR, out=w_x)
        w_x /= w_x.sum(axis=1, keepdims=True)
    else:
        w_x = w0
    th_new, w_new, _, _, _ = _em_map(table, th_x, w_x, learn)
    th_next, w_next, ll_new, sums_new, resp_new = _em_map(table, th_new, w_new, learn)
    steps = batch.steps + 3
    worse = ~(ll_new >= ll1)
    at_max = alpha >= cap
    step_max = cap.copy()
    if worse.any():
        # The safeguard: fall back to the plain EM point x2 and shrink the step bound.
        steps += worse
        th3, w3, ll2, sums2, resp2 = _em_map(table, th2[worse], w2[worse], learn)
        th_new[worse], w_new[worse], th_next[worse], w_next[worse] = th2[worse], w2[worse], th3, w3
        ll_new[worse], sums_new[worse], resp_new[worse] = ll2, sums2, resp2
        shrink = worse & at_max
        step_max[shrink] = np.maximum(1.0, step_max[shrink] / _STEP_FACTOR)
        at_max &= ~worse
    step_max[at_max] *= _STEP_FACTOR
    batch.step_max, batch.steps = step_max, steps
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
    grad, info = score_and_information(table, batch.resp, th, w, learn, batch.sums)
    on_box = (th <= EPS) | (th >= 1.0 - EPS)
    free = None
    if on_box.any():
        free = np.ones(grad.shape, dtype=bool)
        free[:, :k] = ~on_box
    step = steps_from_information(grad, info, free, batch.damping)
    new_th = step[:, :k]
    new_th += th
    # The box is closed: a theta held on EPS or 1 - EPS (not free) does not move.
    # A NaN step fails these comparisons too.
    ok = new_th >= EPS
    ok &= new_th <= 1.0 - EPS
    ok = ok.all(axis=1)
    if grad.shape[1] > k:
        new_w = np.empty_like(w)
        np.add(w[:, :-1], step[:, k:], out=new_w[:, :-1])
        new_w[:, -1] = 1.0
        new_w[:, -1] -= new_w[:, :-1].sum(axis=1)
        ok &= (new_w > WEIGHT_FLOOR).all(axis=1)
        ok &= w.min(axis=1) > 1e-9  # a weight near 0: Newton would cross it
    else:
        new_w = w
    all_ok = ok.all()
    if all_ok:
        ll, sums, resp = _expect(table, new_th, new_w)
        better = ll > batch.ll
    else:
        rows = np.flatnonzero(ok)
        better = ok
        if rows.size:
            ll, sums, resp = _expect(table, new_th[rows], new_w[rows])
            gain = ll > batch.ll[rows]
            better[rows] = gain
    if better.all():
        # The EM image is computed only if a SQUAREM cycle needs it.
        batch.th, batch.w, batch.th1, batch.w1 = new_th, new_w, None, None
        batch.ll, batch.sums, batch.resp = ll, sums, resp
        batch.steps = batch.steps + 1
    elif better.any():
        # Copies: the arrays of the current point may already be in the iteration record.
        kept = better if all_ok else gain
        rows = np.flatnonzero(better)
        batch.th1 = batch.w1 = None
        for name, new in (
            ("th", new_th[rows]),
            ("w", new_w[rows]),
            ("ll", ll[kept]),
            ("sums", sums[kept]),
            ("resp", resp[kept]),
        ):
            value = getattr(batch, name).copy()
            value[rows] = new
            setattr(batch, name, value)
        batch.steps = batch.steps + better
    damping = batch.damping
    batch.full_newton = better & (damping == 0.0)
    damping = np.where(better, damping * (1.0 / _DAMPING_FACTOR), damping * _DAMPING_FACTOR)
    damping[damping < _DAMPING_MIN] = 0.0
    np.maximum(damping, _DAMPING_MIN, out=damping, where=~better)
    batch.damping = damping


def _threshold(tol: float, ll: np.ndarray) -> float:
    """Convergence threshold per run: ``tol``, but never below the rounding noise of ``ll``."""
    if tol <= 0:
        return 0.0
    # All runs share the data, so their log-likelihoods have one magnitude.
    return max(tol, _ULPS * abs(float(ll[0])))


def _gradient_threshold(gtol: float, table: CountTable) -> float:
    """``gtol``, but never below the rounding noise of sums of heads and draws."""
    return max(gtol, 64 * np.finfo(np.float64).eps * (table.n_flips + table.n_draws))
