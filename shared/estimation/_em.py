"""E-step, M-step and the batched EM loop for a mixture of binomials.

Every function works on R runs (restarts) at once: the arrays are tiny (R x M x K with M
distinct pairs), so numpy's per-call overhead, not arithmetic, sets the speed, and one
array computation over all runs beats a Python loop of small ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.estimation._counts import CountTable

# Thetas are kept inside [EPS, 1 - EPS] so log(theta) and log(1 - theta) stay finite.
EPS = 1e-10
# Floor for a mixing weight, so an emptied component keeps a finite log-weight.
_WEIGHT_FLOOR = 1e-300
# A change below this many ulps of the log-likelihood is rounding noise, not progress.
_ULPS = 16 * np.finfo(np.float64).eps


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
    sums = resp @ table.stats_t  # (R, K, 3): expected heads, flips and draws per coin
    flips = sums[:, :, 1]
    new_thetas = np.divide(sums[:, :, 0], flips, out=thetas.copy(), where=flips > 0)
    np.maximum(new_thetas, EPS, out=new_thetas)
    np.minimum(new_thetas, 1.0 - EPS, out=new_thetas)
    if not learn:
        return new_thetas, weights
    new_weights = np.maximum(sums[:, :, 2], _WEIGHT_FLOOR)
    new_weights /= table.n_draws
    return new_thetas, new_weights


def log_likelihood(table: CountTable, thetas: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Total log-likelihood of each run; shapes (R, K) -> (R,)."""
    return e_step(table, thetas, np.log(weights))[1]


@dataclass
class Runs:
    """State of R EM runs. Shapes: thetas, weights (R, K); the rest (R,).

    ``history`` is (T, R): each run's log-likelihood after each of its iterations, NaN
    once the run has stopped (``history[:n_iter[r], r]`` is run r's curve).
    """

    thetas: np.ndarray
    weights: np.ndarray
    log_likelihood: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    history: np.ndarray


def run_em(
    table: CountTable,
    thetas: np.ndarray,
    weights: np.ndarray,
    *,
    learn: bool,
    tol: float,
    max_iter: int,
) -> Runs:
    """Run EM from each row of ``thetas``/``weights`` (R, K) until converged or ``max_iter``.

    One iteration is one M-step and the E-step at its result, so the log-likelihood is
    known after every iteration; a run converges when it changes by less than ``tol``.
    Converged runs leave the batch so the rest iterate on smaller arrays.
    """
    n_runs = thetas.shape[0]
    out = Runs(
        thetas=np.array(thetas, dtype=np.float64),
        weights=np.array(weights, dtype=np.float64),
        log_likelihood=np.empty(n_runs),
        n_iter=np.zeros(n_runs, dtype=np.int64),
        converged=np.zeros(n_runs, dtype=bool),
        history=np.empty((0, n_runs)),
    )
    active = np.arange(n_runs)
    th, w = out.thetas.copy(), out.weights.copy()
    resp, ll = e_step(table, th, np.log(w))
    rows: list[np.ndarray] = []
    segments = [(0, active)]  # (first iteration, runs still active from then on)
    for iteration in range(1, max_iter + 1):
        th, w = m_step(table, resp, th, w, learn)
        resp, new_ll = e_step(table, th, np.log(w))
        rows.append(new_ll)
        done = np.abs(new_ll - ll) < _threshold(tol, new_ll)
        ll = new_ll
        if done.any():
            finished = active[done]
            out.thetas[finished], out.weights[finished] = th[done], w[done]
            out.log_likelihood[finished] = ll[done]
            out.n_iter[finished] = iteration
            out.converged[finished] = True
            keep = ~done
            active, th, w, resp, ll = active[keep], th[keep], w[keep], resp[keep], ll[keep]
            if active.size == 0:
                break
            segments.append((iteration, active))
    if active.size:
        out.thetas[active], out.weights[active] = th, w
        out.log_likelihood[active] = ll
        out.n_iter[active] = max_iter
    out.history = _history(rows, segments, n_runs)
    return out


def _history(rows: list[np.ndarray], segments: list, n_runs: int) -> np.ndarray:
    """Assemble per-iteration log-likelihoods of the active runs into a (T, R) array."""
    history = np.full((len(rows), n_runs), np.nan)
    bounds = [start for start, _ in segments[1:]] + [len(rows)]
    for (start, active), end in zip(segments, bounds, strict=True):
        if end > start:
            history[start:end, active] = np.vstack(rows[start:end])
    return history


def _threshold(tol: float, ll: np.ndarray) -> float:
    """Convergence threshold per run: ``tol``, but never below the rounding noise of ``ll``."""
    if tol <= 0:
        return 0.0
    # All runs share the data, so their log-likelihoods have one magnitude.
    return max(tol, _ULPS * abs(float(ll[0])))
