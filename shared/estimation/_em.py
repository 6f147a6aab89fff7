"""E-step, M-step and the batched EM loop (plain or SQUAREM-accelerated) for binomial mixtures.

Every function works on R runs (restarts) at once: the arrays are tiny (R x M x K with M
distinct pairs), so numpy's per-call overhead, not arithmetic, sets the speed, and one
array computation over all runs beats a Python loop of small ones. For the same reason the
code counts numpy calls: reductions over the few coins are folded by hand, a result that
is not used (a log-likelihood, an EM image a Newton step replaces) is not computed, and
the checks of an iteration run over all runs in one call, not over the converging few.

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
information (see :func:`_newton_try`), kept only where it does not lower the likelihood
beyond its rounding noise; once every active run's last Newton step was kept undamped,
iterations are that Newton step alone (its quadratic convergence needs no EM steps), until
one is refused. So the log-likelihood never decreases from one iteration to the next
(beyond rounding), and an iteration costs at most three EM steps (four on a fallback) and
one E-step for Newton. Runs that continue a screen of plain EM steps (:func:`run_screened`)
open with a SQUAREM cycle, and take Newton steps from their next iteration on.
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
# continuing a screen takes them from the continuation's second iteration at the latest).
NEWTON_AFTER = 4
# SQUAREM's step-length bound starts at 1 and is multiplied or divided by this.
_STEP_FACTOR = 4.0
# Floor on |v|^2 in alpha = |r| / |v|: at a fixed point (v = 0) alpha takes its cap.
_TINY = 1e-300
# Newton damping, relative to a run's largest curvature: 0 after successes, at least
# _DAMPING_MIN after a refused step, and multiplied or divided by _DAMPING_FACTOR.
_DAMPING_MIN = 1e-4
_DAMPING_FACTOR = 4.0
# ... and at most this: a step damped this much is nothing, and steps refused for leaving
# the box (not for the likelihood) would otherwise grow it until it overflows.
_DAMPING_MAX = 1e12

# The arrays here hold a few dozen numbers, so a numpy call costs far more than its
# arithmetic: reductions are called on the ufuncs (the ndarray methods add a Python layer),
# and "any" is a count of nonzero entries.
_max = np.maximum.reduce
_min = np.minimum.reduce
_all = np.logical_and.reduce
_count = np.count_nonzero


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
    table: CountTable, thetas: np.ndarray, logs: np.ndarray, with_ll: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`e_step` with the log-weights already in ``logs[:, :, 2]`` (R, K, 3); the
    log-likelihoods are None unless ``with_ll``."""
    n_runs, k = thetas.shape
    np.log(thetas, out=logs[:, :, 0])
    np.log1p(-thetas, out=logs[:, :, 1])
    # One (R K, 3) x (3, M) product: a stack of R small ones costs a BLAS call each.
    joint = (logs.reshape(n_runs * k, 3) @ table.design_t).reshape(n_runs, k, -1)
    # logsumexp over K by hand: scipy's costs far more than the arithmetic on a few pairs,
    # and so does a numpy reduction over the middle axis, against K - 1 binary ufuncs.
    top = fold_coins(np.maximum, joint)  # (R, M)
    joint -= top[:, None, :]
    np.exp(joint, out=joint)
    norm = fold_coins(np.add, joint)
    joint /= norm[:, None, :]
    if not with_ll:
        return joint, None
    np.log(norm, out=norm)
    norm += top
    return joint, norm @ table.counts + table.total_log_coef


def fold_coins(ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
    """``ufunc`` folded over the coins (axis 1) of ``values`` (R, K, ...), into a new
    (R, ...): on (R, K) arrays too, where a reduction over the short last axis costs
    several times the K - 1 binary calls."""
    k = values.shape[1]
    if k == 1:
        return values[:, 0].copy()
    out = ufunc(values[:, 0], values[:, 1])
    for j in range(2, k):
        ufunc(out, values[:, j], out=out)
    return out


def _sums(table: CountTable, resp: np.ndarray) -> np.ndarray:
    """Posterior sums (R, K, 6) of ``table.stats_t`` from responsibilities (R, K, M)."""
    n_runs, k, m = resp.shape
    return (resp.reshape(n_runs * k, m) @ table.stats_t).reshape(n_runs, k, -1)


def m_step(
    table: CountTable, resp: np.ndarray, thetas: np.ndarray, weights: np.ndarray, learn: bool
) -> tuple[np.ndarray, np.ndarray]:
    """New thetas and weights from responsibilities.

    Shapes: ``resp`` (R, K, M), ``thetas`` and ``weights`` (R, K) -> thetas (R, K),
    weights (R, K). A component with no expected flips keeps its previous theta;
    ``learn=False`` keeps the weights as given.
    """
    return _maximise(table, _sums(table, resp), thetas, weights, learn)


def _maximise(
    table: CountTable, sums: np.ndarray, thetas: np.ndarray, weights: np.ndarray, learn: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The M-step from the posterior sums ``sums`` (R, K, 6) (expected heads, flips and
    draws per coin first)."""
    flips = sums[:, :, 1]
    if _count(flips) == flips.size:
        new_thetas = sums[:, :, 0] / flips
    else:
        new_thetas = np.divide(sums[:, :, 0], flips, out=thetas.copy(), where=flips > 0)
    # Two ufuncs: np.clip's Python wrapper costs more than the clipping on tiny arrays.
    np.maximum(new_thetas, EPS, out=new_thetas)
    np.minimum(new_thetas, 1.0 - EPS, out=new_thetas)
    if not learn:
        return new_thetas, weights
    new_weights = sums[:, :, 2] * table.inv_draws
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
    if _count(low) or _count(high):
        g = np.where(low, np.maximum(g, 0.0), np.where(high, np.maximum(-g, 0.0), np.abs(g)))
    else:
        np.abs(g, out=g)
    worst = fold_coins(np.maximum, g)
    if not learn or thetas.shape[1] == 1:
        return worst
    draws = sums[:, :, 2]
    free = weights > WEIGHT_FLOOR
    if _count(free) == free.size:
        # As below, with every weight free.
        gw = weights * (fold_coins(np.add, draws) / fold_coins(np.add, weights))[:, None]
        np.subtract(draws, gw, out=gw)
        np.abs(gw, out=gw)
        return np.maximum(worst, fold_coins(np.maximum, gw), out=worst)
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
    return ll, _sums(table, resp), resp


def _em_image(
    table: CountTable, thetas: np.ndarray, weights: np.ndarray, learn: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The EM image (thetas, weights), shapes (R, K), of a point whose likelihood is not
    needed."""
    logs = np.empty((thetas.shape[0], thetas.shape[1], 3))
    np.log(weights, out=logs[:, :, 2])
    resp, _ = _posterior(table, thetas, logs, with_ll=False)
    return _maximise(table, _sums(table, resp), thetas, weights, learn)


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
        """The runs at ``index`` (integer indices), as a new :class:`Runs`."""
        return Runs(
            thetas=self.thetas.take(index, 0),
            weights=self.weights.take(index, 0),
            log_likelihood=self.log_likelihood.take(index),
            gradient=self.gradient.take(index),
            n_iter=self.n_iter.take(index),
            n_steps=self.n_steps.take(index),
            converged=self.converged.take(index),
            history=self.history.take(index, 1),
            theta_history=self.theta_history.take(index, 1),
        )


# One entry per active run after each iteration: (run indices, log-likelihoods, thetas).
_Record = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class _Batch:
    """The active runs: current point x0 with its log-likelihood, sums and posteriors, its
    EM image x1 (None after a Newton step, until a SQUAREM cycle needs it), and per-run
    SQUAREM step bound, EM-step count, Newton damping, and whether the last Newton step
    was kept undamped (``all_full``: for every run).

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
    all_full: bool

    def keep(self, rows: np.ndarray) -> None:
        """Keep only the runs at ``rows`` (integer indices), in that order."""
        self.index = self.index.take(rows)
        self.th, self.w = self.th.take(rows, 0), self.w.take(rows, 0)
        if self.th1 is not None and self.w1 is not None:
            self.th1, self.w1 = self.th1.take(rows, 0), self.w1.take(rows, 0)
        self.ll = self.ll.take(rows)
        self.sums, self.resp = self.sums.take(rows, 0), self.resp.take(rows, 0)
        self.step_max, self.steps = self.step_max.take(rows), self.steps.take(rows)
        self.damping, self.full_newton = self.damping.take(rows), self.full_newton.take(rows)
        self.all_full = _count(self.full_newton) == rows.size

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
        self.all_full = full_newton


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
        full_newton,
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
    out.history, out.theta_history = _histories(record, *thetas.shape)
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
    image included) and counts iterations from the start of the screen. It opens with a
    SQUAREM cycle, and its Newton steps begin at iteration ``NEWTON_AFTER`` of the whole
    run or at its own second iteration, whichever comes later: after a screen of plain
    EM, runs still far from their maximum refuse a Newton step, and one extrapolation
    brings them near enough for the next. ``choose`` sees every run's point,
    log-likelihood and convergence, not yet its gradient or history.
    """
    thetas = np.array(thetas, dtype=np.float64)
    weights = np.array(weights, dtype=np.float64)
    n_runs = thetas.shape[0]
    settings = {"learn": learn, "tol": tol, "gtol": gtol}
    screen_iter = min(screen_iter, max_iter)
    screen = _empty_runs(thetas, weights)
    batch = _start(table, thetas, weights, learn, False)
    record = _iterate(
        table, batch, screen, max_iter=screen_iter, accelerate=False, newton_after=1, **settings
    )
    if batch.index.size == n_runs:
        # No run converged in the screen: the batch holds every run, in order.
        screen.thetas, screen.weights, screen.log_likelihood = batch.th, batch.w, batch.ll
        screen.n_steps = batch.steps
    else:
        screen.thetas[batch.index], screen.weights[batch.index] = batch.th, batch.w
        screen.log_likelihood[batch.index] = batch.ll
        screen.n_steps[batch.index] = batch.steps
    screen.n_iter[batch.index] = screen_iter
    chosen = choose(screen)
    runs = screen.select(chosen)
    runs.history, runs.theta_history = _histories(record, n_runs, thetas.shape[1], chosen)
    # Rows of the still active chosen runs in the screen's batch (its index is sorted).
    open_ = (~runs.converged).nonzero()[0]
    batch.keep(np.searchsorted(batch.index, chosen.take(open_)))
    if max_iter <= screen_iter or not open_.size:
        if open_.size:
            runs.gradient[open_] = stationarity(table, batch.sums, batch.th, batch.w, learn)
        return runs, chosen
    newton_after = max(2, NEWTON_AFTER - screen_iter)
    batch.restart(full_newton=False)
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
    more.history, more.theta_history = _histories(record, open_.size, thetas.shape[1])
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
) -> _Record:
    """Iterate the runs in ``batch`` up to ``max_iter`` times, moving converged runs into
    ``out``; returns (index, log-likelihoods, thetas) of the active runs after each
    iteration. Runs still active at the end stay in ``batch``."""
    record: _Record = []
    step = _squarem_cycle if accelerate else _plain_step
    gradient_threshold = _gradient_threshold(gtol, table)
    for iteration in range(1, max_iter + 1):
        previous = batch.ll
        newton = accelerate and iteration >= newton_after
        # Once every run's last Newton step was a full, kept one, Newton alone converges
        # quadratically: the EM steps of a SQUAREM cycle would only add cost.
        if not (newton and batch.all_full):
            step(table, batch, learn)
        if newton:
            _newton_try(table, batch, learn)
        record.append((batch.index, batch.ll, batch.th))
        if tol <= 0:
            continue
        change = batch.ll - previous
        done = np.abs(change, out=change) < _threshold(tol, batch.ll)
        if not _count(done):
            continue
        # The gradient is only needed once the log-likelihood has stopped rising somewhere;
        # for every run at once, as one call costs what a call on a few rows does.
        grad = stationarity(table, batch.sums, batch.th, batch.w, learn)
        done &= grad <= gradient_threshold
        n_done = _count(done)
        if not n_done:
            continue
        which = done.nonzero()[0]
        _finish(out, batch, which, grad.take(which), iteration, converged=True)
        if n_done == done.size:
            batch.keep(which[:0])
            break
        batch.keep((~done).nonzero()[0])
    return record


def _stop(table: CountTable, batch: _Batch, out: Runs, n_iter: int, learn: bool) -> None:
    """Move the runs still in ``batch`` into ``out`` as not converged after ``n_iter``."""
    if batch.index.size:
        grad = stationarity(table, batch.sums, batch.th, batch.w, learn)
        _finish(out, batch, np.arange(batch.index.size), grad, n_iter, converged=False)


def _histories(
    record: _Record, n_runs: int, k: int, columns: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood (T, R) and theta (T, R, K) histories of ``n_runs`` runs from the
    iteration record, NaN where a run had stopped; only ``columns`` of them when given."""
    if record and record[-1][0].size == n_runs:
        # The batch never shrank: every iteration recorded every run, in order.
        history = np.array([ll for _, ll, _ in record])
        theta_history = np.array([th for _, _, th in record])
    else:
        history = np.full((len(record), n_runs), np.nan)
        theta_history = np.full((len(record), n_runs, k), np.nan)
        for t, (index, lls, ths) in enumerate(record):
            history[t, index] = lls
            theta_history[t, index] = ths
    if columns is not None:
        return history.take(columns, 1), theta_history.take(columns, 1)
    return history, theta_history


def _extend(runs: Runs, which: np.ndarray, more: Runs) -> None:
    """Append the continuation ``more`` of runs ``which`` to ``runs`` in place."""
    runs.thetas[which] = more.thetas
    runs.weights[which] = more.weights
    runs.log_likelihood[which] = more.log_likelihood
    runs.gradient[which] = more.gradient
    runs.converged[which] = more.converged
    # Runs that converged during screening have NaN past their n_iter; others continue.
    n_old, n_runs = runs.history.shape
    if which.size == n_runs:
        runs.history = np.concatenate((runs.history, more.history))
        runs.theta_history = np.concatenate((runs.theta_history, more.theta_history))
    else:
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
    """Copy the runs at ``which`` (integer indices into the batch), with their final
    ``gradient``, into ``out``."""
    rows = batch.index.take(which)
    out.thetas[rows] = batch.th.take(which, 0)
    out.weights[rows] = batch.w.take(which, 0)
    out.log_likelihood[rows] = batch.ll.take(which)
    out.gradient[rows] = gradient
    out.n_iter[rows] = n_iter
    out.n_steps[rows] = batch.steps.take(which)
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
    r2, v2 = fold_coins(np.add, r_th * r_th), fold_coins(np.add, v_th * v_th)
    if learn:
        r_w = w1 - w0
        v_w = w2 - w1
        v_w -= r_w
        r2 += fold_coins(np.add, r_w * r_w)
        v2 += fold_coins(np.add, v_w * v_w)
    # alpha = sqrt(r2 / v2) clipped to [1, step_max]; v2 = 0 (a fixed point) means step_max,
    # and the floor on v2 avoids the division by zero (and an np.errstate context).
    cap = batch.step_max
    alpha = r2 / np.maximum(v2, _TINY)
    np.sqrt(alpha, out=alpha)
    np.maximum(alpha, 1.0, out=alpha)
    np.minimum(alpha, cap, out=alpha)
    a1, a2 = (2.0 * alpha)[:, None], (alpha * alpha)[:, None]
    r_th *= a1
    v_th *= a2
    th_x = th0 + r_th
    th_x += v_th
    np.maximum(th_x, EPS, out=th_x)
    np.minimum(th_x, 1.0 - EPS, out=th_x)
    if learn:
        r_w *= a1
        v_w *= a2
        w_x = w0 + r_w
        w_x += v_w
        np.maximum(w_x, WEIGHT_FLOOR, out=w_x)
        w_x /= fold_coins(np.add, w_x)[:, None]
    else:
        w_x = w0
    th_new, w_new = _em_image(table, th_x, w_x, learn)
    # The EM image of the new point is left to batch.image: a Newton step usually follows.
    ll_new, sums_new, resp_new = _expect(table, th_new, w_new)
    steps = batch.steps + 3
    worse = ll_new >= ll1
    np.logical_not(worse, out=worse)
    at_max = alpha >= cap
    step_max = cap.copy()
    if _count(worse):
        # The safeguard: fall back to the plain EM point x2 and shrink the step bound.
        steps += worse
        ll2, sums2, resp2 = _expect(table, th2[worse], w2[worse])
        th_new[worse], w_new[worse] = th2[worse], w2[worse]
        ll_new[worse], sums_new[worse], resp_new[worse] = ll2, sums2, resp2
        shrink = worse & at_max
        step_max[shrink] = np.maximum(1.0, step_max[shrink] / _STEP_FACTOR)
        at_max &= ~worse
    step_max[at_max] *= _STEP_FACTOR
    batch.step_max, batch.steps = step_max, steps
    batch.th, batch.w, batch.th1, batch.w1 = th_new, w_new, None, None
    batch.ll, batch.sums, batch.resp = ll_new, sums_new, resp_new


def _newton_try(table: CountTable, batch: _Batch, learn: bool) -> None:
    """A damped Newton step on the observed information from every run, kept where it
    does not lower the log-likelihood and stays inside the box (free parameters only; see
    the module docstring).

    The damping (Levenberg-Marquardt, in units of each run's largest curvature) shrinks
    after a kept step and grows after a refused one, so on a flat, curved ridge where the
    full step overshoots, the next tries are shorter instead of being refused every time.
    A step is kept when the log-likelihood falls by no more than its rounding noise (the
    ``_ULPS`` of the stopping rule): at a maximum, where the gain is below rounding and the
    new value lands a few ulps either side of the old, refusing it would damp the next
    step and send every run back through a SQUAREM cycle, and a damping grown without end
    would shrink the steps until they could no longer bring the gradient down to ``gtol``.
    """
    th, w = batch.th, batch.w
    n_runs, k = th.shape
    grad, info = score_and_information(table, batch.resp, th, w, learn, batch.sums)
    free = None
    if not (_min(th, None) > EPS and _max(th, None) < 1.0 - EPS):
        on_box = th <= EPS
        on_box |= th >= 1.0 - EPS
        free = np.ones(grad.shape, dtype=bool)
        free[:, :k] = ~on_box
    damping = batch.damping
    undamped = not _count(damping)
    step = steps_from_information(grad, info, free, None if undamped else damping)
    new_th = step[:, :k]
    new_th += th
    learn_w = grad.shape[1] > k
    if learn_w:
        new_w = np.empty_like(w)
        np.add(w[:, :-1], step[:, k:], out=new_w[:, :-1])
        new_w[:, -1] = 1.0
        new_w[:, -1] -= fold_coins(np.add, new_w[:, :-1])
    else:
        new_w = w
    # The box is closed: a theta held on EPS or 1 - EPS (not free) does not move.
    # A NaN step fails these comparisons too. One test over all runs settles the usual
    # case; the per-run tests only run when it fails.
    all_ok = _min(new_th, None) >= EPS and _max(new_th, None) <= 1.0 - EPS
    if learn_w:
        # A weight near 0: Newton would cross it.
        all_ok = all_ok and _min(new_w, None) > WEIGHT_FLOOR and _min(w, None) > 1e-9
    if all_ok:
        ll, sums, resp = _expect(table, new_th, new_w)
        better = ll >= batch.ll - _noise(batch.ll)
    else:
        ok = new_th >= EPS
        ok &= new_th <= 1.0 - EPS
        ok = _all(ok, 1)
        if learn_w:
            ok &= _all(new_w > WEIGHT_FLOOR, 1)
            ok &= _min(w, 1) > 1e-9
        rows = ok.nonzero()[0]
        better = ok
        if rows.size:
            ll, sums, resp = _expect(table, new_th.take(rows, 0), new_w.take(rows, 0))
            gain = ll >= batch.ll.take(rows) - _noise(batch.ll)
            better[rows] = gain
    n_better = _count(better)
    if n_better == n_runs:
        # The EM image is computed only if a SQUAREM cycle needs it.
        batch.th, batch.w, batch.th1, batch.w1 = new_th, new_w, None, None
        batch.ll, batch.sums, batch.resp = ll, sums, resp
        batch.steps = batch.steps + 1
        if undamped:
            # Every step was full and kept: the damping stays 0.
            batch.full_newton = better
            batch.all_full = True
            return
    elif n_better:
        # New arrays: those of the current point may already be in the iteration record.
        batch.th1 = batch.w1 = None
        if all_ok:
            pick = better[:, None]
            batch.th = np.where(pick, new_th, batch.th)
            batch.w = np.where(pick, new_w, batch.w)
            batch.ll = np.where(better, ll, batch.ll)
            batch.sums = np.where(pick[:, :, None], sums, batch.sums)
            batch.resp = np.where(pick[:, :, None], resp, batch.resp)
        else:
            kept = gain
            rows = better.nonzero()[0]
            batch.th, batch.w = batch.th.copy(), batch.w.copy()
            batch.th[rows], batch.w[rows] = new_th[rows], new_w[rows]
            batch.ll, batch.sums = batch.ll.copy(), batch.sums.copy()
            batch.resp = batch.resp.copy()
            batch.ll[rows], batch.sums[rows], batch.resp[rows] = ll[kept], sums[kept], resp[kept]
        batch.steps = batch.steps + better
    full = better & (damping == 0.0)
    batch.full_newton = full
    batch.all_full = _count(full) == n_runs
    damping = np.where(better, damping * (1.0 / _DAMPING_FACTOR), damping * _DAMPING_FACTOR)
    damping[damping < _DAMPING_MIN] = 0.0
    np.maximum(damping, _DAMPING_MIN, out=damping, where=~better)
    np.minimum(damping, _DAMPING_MAX, out=damping)
    batch.damping = damping


def _threshold(tol: float, ll: np.ndarray) -> float:
    """Convergence threshold per run: ``tol``, but never below the rounding noise of ``ll``."""
    if tol <= 0:
        return 0.0
    return max(tol, _noise(ll))


def _noise(ll: np.ndarray) -> float:
    """Rounding noise of the log-likelihoods ``ll`` (R,)."""
    # All runs share the data, so their log-likelihoods have one magnitude.
    return _ULPS * abs(float(ll[0]))


def _gradient_threshold(gtol: float, table: CountTable) -> float:
    """``gtol``, but never below the rounding noise of sums of heads and draws."""
    return max(gtol, 64 * np.finfo(np.float64).eps * (table.n_flips + table.n_draws))
