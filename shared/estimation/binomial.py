"""Mixture of binomials fitted by EM (Do & Batzoglou 2008, generalised to K coins)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from shared.draws import parse_flip_strings
from shared.estimation._counts import CountTable, log_binomial_coefficient, tally
from shared.estimation._em import EPS, Runs, log_likelihood, run_em
from shared.estimation._information import standard_errors
from shared.estimation._init import boundary_starts, kmeans_seeds, random_seeds
from shared.estimation._validation import (
    check_counts,
    check_n_components,
    check_positive_int,
    max_identifiable_components,
)

# Each restart is the best of this many short trial runs from diverse starts: a handful of
# plain restarts misses maxima on the boundary or between nearly equal coins.
_TRIALS_PER_RESTART = 10
_MIN_TRIALS = 50
_SCREEN_ITER = 15
# Share of the trial runs that start with one coin on the boundary (see boundary_starts).
_BOUNDARY_SHARE = 0.2
# Screened runs whose sorted thetas all lie within this distance count as the same basin.
_SAME_BASIN = 0.02
# A theta this close to the boundary is tried on it, kept there if that is no worse:
# EM creeps towards a boundary maximum geometrically and stops short of it.
_SNAP = 1e-4


class BinomialMixture(BaseEstimator):
    """Mixture of K binomials (coins) fitted by EM to heads counts, one count per draw.

    ``weights`` is ``"learn"`` (estimate the mixing weights) or ``"equal"`` (fixed at 1/K).
    ``init`` is ``"kmeans"``, ``"random"`` or an array of K initial thetas (one run).
    ``tol`` bounds the change in total log-likelihood; ``tol=0`` runs exactly ``max_iter``.

    With ``"kmeans"`` or ``"random"``, each of the ``n_init`` restarts is the survivor of
    a screen: ten times as many short runs (at least 50; a fifth of them with one coin on
    the boundary) are iterated 15 times together, and the best run of each distinct basin,
    then the next best, go on to convergence. ``restarts_`` describes the survivors.

    Fitted attributes: ``thetas_`` (ascending), ``weights_``, ``log_likelihood_`` (total,
    with binomial coefficients), ``n_iter_``, ``converged_``, ``restarts_`` (JSON-ready
    dicts), ``log_likelihood_history_``, ``averaged_thetas_``, ``averaged_weights_``,
    ``averaged_std_``, ``standard_errors_`` (NaN on the boundary), ``n_draws_``.
    A theta within 1e-4 of 0 or 1 is moved onto the boundary after EM when that does not
    lower the likelihood, so ``log_likelihood_`` can exceed the history's last entry.
    """

    def __init__(
        self,
        n_components: int = 2,
        *,
        weights: str = "learn",
        n_init: int = 10,
        init: str | ArrayLike = "kmeans",
        tol: float = 1e-8,
        max_iter: int = 1000,
        random_state: Any = None,
    ) -> None:
        self.n_components = n_components
        self.weights = weights
        self.n_init = n_init
        self.init = init
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, heads: ArrayLike, trials: ArrayLike | int) -> BinomialMixture:
        """Estimate thetas and weights from heads counts and flips per draw."""
        heads_arr, trials_arr = check_counts(heads, trials)
        table = tally(heads_arr, trials_arr)
        k = check_n_components(self.n_components, table.max_trials)
        learn = self._check_weights()
        max_iter = check_positive_int(self.max_iter, "max_iter")
        tol = self._check_tol()
        rng = check_random_state(self.random_state)
        init_thetas, init_weights = self._starts(table, k, learn, rng)
        runs, starts = self._run(table, init_thetas, init_weights, learn, tol, max_iter)
        self._store(table, runs, init_thetas[starts], init_weights[starts], learn)
        if not self.converged_:
            warnings.warn(
                f"EM did not converge in max_iter={max_iter} iterations (tol={tol}); "
                "increase max_iter or tol",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def fit_flips(self, draws: Sequence[str]) -> BinomialMixture:
        """Fit to flip strings such as ``"HTTH"`` (H/T, any case), one string per draw."""
        heads, trials = parse_flip_strings(draws)
        return self.fit(heads, trials)

    def predict_proba(self, heads: ArrayLike, trials: ArrayLike | int) -> np.ndarray:
        """Posterior probability of each coin for each draw; shape (n_draws, K)."""
        check_is_fitted(self, "thetas_")
        h, n = check_counts(heads, trials)
        return np.exp(self._log_joint(h, n) - self._log_evidence(h, n)[:, None])

    def predict(self, heads: ArrayLike, trials: ArrayLike | int) -> np.ndarray:
        """Most probable coin (index into ``thetas_``) for each draw."""
        return self.predict_proba(heads, trials).argmax(axis=1)

    def score_samples(self, heads: ArrayLike, trials: ArrayLike | int) -> np.ndarray:
        """Log-likelihood of each draw, including the binomial coefficient."""
        check_is_fitted(self, "thetas_")
        h, n = check_counts(heads, trials)
        return self._log_evidence(h, n)

    def score(self, heads: ArrayLike, trials: ArrayLike | int) -> float:
        """Mean log-likelihood per draw."""
        return float(self.score_samples(heads, trials).mean())

    def bic(self, heads: ArrayLike, trials: ArrayLike | int) -> float:
        """Bayesian information criterion on the given draws (lower is better)."""
        samples = self.score_samples(heads, trials)
        return float(-2 * samples.sum() + self.n_parameters_ * np.log(samples.size))

    def aic(self, heads: ArrayLike, trials: ArrayLike | int) -> float:
        """Akaike information criterion on the given draws (lower is better)."""
        samples = self.score_samples(heads, trials)
        return float(-2 * samples.sum() + 2 * self.n_parameters_)

    def select_components(
        self, heads: ArrayLike, trials: ArrayLike | int, max_components: int
    ) -> tuple[int, dict[int, float]]:
        """Fit K = 1 .. max_components (capped at the identifiable K); return best K and BICs.

        Uses this estimator's settings apart from ``n_components`` and leaves it unfitted.
        """
        heads_arr, trials_arr = check_counts(heads, trials)
        top = check_positive_int(max_components, "max_components")
        top = min(top, max_identifiable_components(int(trials_arr.max())))
        bics: dict[int, float] = {}
        for k in range(1, top + 1):
            model = self.__class__(**{**self.get_params(), "n_components": k})
            bics[k] = model.fit(heads_arr, trials_arr).bic(heads_arr, trials_arr)
        return min(bics, key=lambda k: (bics[k], k)), bics

    @property
    def n_parameters_(self) -> int:
        """Free parameters: K thetas, plus K - 1 weights when they are learned."""
        check_is_fitted(self, "thetas_")
        k = self.thetas_.size
        return 2 * k - 1 if self.weights == "learn" else k

    def _check_weights(self) -> bool:
        """Return True when the weights are learned."""
        if self.weights not in ("learn", "equal"):
            raise ValueError(f"weights must be 'learn' or 'equal', got {self.weights!r}")
        return self.weights == "learn"

    def _check_tol(self) -> float:
        """Return ``tol`` as a non-negative float."""
        try:
            tol = float(self.tol)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"tol must be a non-negative number, got {self.tol!r}") from exc
        if not tol >= 0:
            raise ValueError(f"tol must be a non-negative number, got {self.tol!r}")
        return tol

    def _starts(
        self, table: CountTable, k: int, learn: bool, rng: np.random.RandomState
    ) -> tuple[np.ndarray, np.ndarray]:
        """Candidate starting thetas and weights, shapes (S, K)."""
        if isinstance(self.init, str):
            n_init = check_positive_int(self.n_init, "n_init")
            n_seeds = max(_MIN_TRIALS, _TRIALS_PER_RESTART * n_init)
            if self.init == "kmeans":
                thetas, weights = kmeans_seeds(table, k, n_seeds, rng)
            elif self.init == "random":
                thetas, weights = random_seeds(k, n_seeds, rng)
            else:
                raise ValueError(
                    f"init must be 'kmeans', 'random' or an array of {k} thetas, got {self.init!r}"
                )
            boundary_starts(table, thetas, weights, _BOUNDARY_SHARE, rng)
        else:
            thetas = self._explicit_init(k)[None, :]
            weights = np.full((1, k), 1.0 / k)
        if not learn:
            weights = np.full_like(weights, 1.0 / k)
        return thetas, weights

    def _explicit_init(self, k: int) -> np.ndarray:
        """The user's initial thetas, checked and kept inside [EPS, 1 - EPS]."""
        try:
            thetas = np.asarray(self.init, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"init must be 'kmeans', 'random' or {k} thetas: {exc}") from exc
        if thetas.shape != (k,):
            raise ValueError(f"init must hold n_components={k} thetas, got shape {thetas.shape}")
        if not np.all((thetas >= 0) & (thetas <= 1)):
            raise ValueError(f"initial thetas must lie in [0, 1], got {thetas.tolist()}")
        return np.clip(thetas, EPS, 1 - EPS)

    def _run(
        self,
        table: CountTable,
        thetas: np.ndarray,
        weights: np.ndarray,
        learn: bool,
        tol: float,
        max_iter: int,
    ) -> tuple[Runs, np.ndarray]:
        """Screen many short runs, then run the best ``n_init`` of them to convergence.

        Returns the runs and, for each, the index of its starting point.
        """
        if thetas.shape[0] == 1:
            runs = run_em(table, thetas, weights, learn=learn, tol=tol, max_iter=max_iter)
            return runs, np.zeros(1, dtype=np.int64)
        screen_iter = min(_SCREEN_ITER, max_iter)
        screen = run_em(table, thetas, weights, learn=learn, tol=tol, max_iter=screen_iter)
        n_keep = min(check_positive_int(self.n_init, "n_init"), thetas.shape[0])
        best = _diverse_best(screen, n_keep)
        runs = _select(screen, best)
        todo = np.flatnonzero(~runs.converged)
        if todo.size and max_iter > screen_iter:
            more = run_em(
                table,
                runs.thetas[todo],
                runs.weights[todo],
                learn=learn,
                tol=tol,
                max_iter=max_iter - screen_iter,
            )
            _extend(runs, todo, more)
        return runs, best

    def _store(
        self,
        table: CountTable,
        runs: Runs,
        init_thetas: np.ndarray,
        init_weights: np.ndarray,
        learn: bool,
    ) -> None:
        """Set the fitted attributes from the finished runs."""
        _snap_to_boundary(table, runs)
        order = np.argsort(runs.thetas, axis=1, kind="stable")
        thetas = np.take_along_axis(runs.thetas, order, axis=1)
        weights = np.take_along_axis(runs.weights, order, axis=1)
        best = int(np.argmax(runs.log_likelihood))
        self.thetas_ = thetas[best].copy()
        self.weights_ = weights[best].copy()
        self.log_likelihood_ = float(runs.log_likelihood[best])
        self.n_iter_ = int(runs.n_iter[best])
        self.converged_ = bool(runs.converged[best])
        self.log_likelihood_history_ = runs.history[: self.n_iter_, best].copy()
        self.restarts_ = [
            {
                "initial_thetas": init_thetas[r].tolist(),
                "initial_weights": init_weights[r].tolist(),
                "thetas": thetas[r].tolist(),
                "weights": weights[r].tolist(),
                "log_likelihood": float(runs.log_likelihood[r]),
                "n_iter": int(runs.n_iter[r]),
                "converged": bool(runs.converged[r]),
            }
            for r in range(runs.thetas.shape[0])
        ]
        self.averaged_thetas_ = thetas.mean(axis=0)
        self.averaged_weights_ = weights.mean(axis=0)
        self.averaged_std_ = thetas.std(axis=0)
        self.standard_errors_ = standard_errors(table, self.thetas_, self.weights_, learn)
        self.n_draws_ = table.n_draws

    def _log_joint(self, heads: np.ndarray, trials: np.ndarray) -> np.ndarray:
        """log(weight_k) + log binomial pmf for each draw and coin; shape (N, K)."""
        log_pmf = (
            heads[:, None] * np.log(self.thetas_)
            + (trials - heads)[:, None] * np.log1p(-self.thetas_)
            + log_binomial_coefficient(heads, trials)[:, None]
        )
        return log_pmf + np.log(self.weights_)

    def _log_evidence(self, heads: np.ndarray, trials: np.ndarray) -> np.ndarray:
        """Log-likelihood of each draw (logsumexp over coins); shape (N,)."""
        joint = self._log_joint(heads, trials)
        top = joint.max(axis=1, keepdims=True)
        return np.log(np.exp(joint - top).sum(axis=1)) + top[:, 0]


def select_components(
    heads: ArrayLike, trials: ArrayLike | int, max_components: int, **settings: Any
) -> tuple[int, dict[int, float]]:
    """Best K by BIC among 1 .. max_components, and every K's BIC; ``settings`` as for the class."""
    return BinomialMixture(**settings).select_components(heads, trials, max_components)


def _diverse_best(runs: Runs, n_keep: int) -> np.ndarray:
    """Indices of ``n_keep`` runs: the best of each distinct basin first, then the next best.

    After a short screen a slow run towards a better but flat maximum can trail many runs
    heading for one worse point; keeping one run per basin keeps it in the race.
    """
    ll = runs.log_likelihood
    key = np.sort(runs.thetas, axis=1)
    apart = np.abs(key[:, None, :] - key[None, :, :]).max(axis=2) > _SAME_BASIN  # (S, S)
    open_ = np.ones(ll.size, dtype=bool)
    chosen: list[int] = []
    while len(chosen) < n_keep and open_.any():
        pick = int(np.argmax(np.where(open_, ll, -np.inf)))
        chosen.append(pick)
        open_ &= apart[pick]
    taken = set(chosen)
    rest = [int(i) for i in np.argsort(-ll, kind="stable") if int(i) not in taken]
    return np.array(chosen + rest[: n_keep - len(chosen)], dtype=np.int64)


def _select(runs: Runs, index: np.ndarray) -> Runs:
    """The runs at ``index``, as a new :class:`Runs`."""
    return Runs(
        thetas=runs.thetas[index],
        weights=runs.weights[index],
        log_likelihood=runs.log_likelihood[index],
        n_iter=runs.n_iter[index],
        converged=runs.converged[index],
        history=runs.history[:, index],
    )


def _extend(runs: Runs, which: np.ndarray, more: Runs) -> None:
    """Append the continuation ``more`` of runs ``which`` to ``runs`` in place."""
    runs.thetas[which] = more.thetas
    runs.weights[which] = more.weights
    runs.log_likelihood[which] = more.log_likelihood
    runs.converged[which] = more.converged
    extra = np.full((more.history.shape[0], runs.history.shape[1]), np.nan)
    extra[:, which] = more.history
    # Runs that converged during screening have NaN past their n_iter; others continue.
    runs.history = np.vstack((runs.history, extra))
    runs.n_iter[which] += more.n_iter


def _snap_to_boundary(table: CountTable, runs: Runs) -> None:
    """Move thetas near 0 or 1 onto the boundary when that does not lower the likelihood."""
    for j in range(runs.thetas.shape[1]):
        col = runs.thetas[:, j]
        target = np.where(col < 0.5, EPS, 1 - EPS)
        near = (np.abs(col - target) < _SNAP) & (col != target)
        if not near.any():
            continue
        trial = runs.thetas.copy()
        trial[near, j] = target[near]
        ll = log_likelihood(table, trial, runs.weights)
        better = near & (ll >= runs.log_likelihood)
        runs.thetas[better] = trial[better]
        runs.log_likelihood[better] = ll[better]
