"""Mixture of binomials fitted by EM (Do & Batzoglou 2008, generalised to K coins)."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from shared.draws import parse_flip_strings
from shared.estimation._counts import CountTable, log_binomial_coefficient, tally_draws
from shared.estimation._em import (
    EPS,
    WEIGHT_FLOOR,
    Runs,
    e_step,
    log_likelihood,
    run_em,
    run_screened,
)
from shared.estimation._information import (
    errors_from_information,
    information_from_posterior,
    newton_polish,
)
from shared.estimation._init import boundary_starts, kmeans_seeds, random_seeds
from shared.estimation._validation import (
    check_counts,
    check_n_components,
    check_positive_int,
    check_sample_weight,
)
from shared.estimation.diagnostics import (
    Degeneracy,
    classification_entropy,
    component_limit,
    degenerate_components,
)

# Each restart is the best of this many short trial runs from diverse starts: a handful of
# plain restarts misses maxima on the boundary or between nearly equal coins.
_TRIALS_PER_RESTART = 10
_MIN_TRIALS = 50
_SCREEN_ITER = 5
# Share of the trial runs that start with one coin on the boundary (see boundary_starts).
_BOUNDARY_SHARE = 0.2
# Screened runs whose sorted thetas all lie within this distance count as the same basin.
_SAME_BASIN = 0.02
# A theta this close to the boundary is tried on it, kept there if that is no worse:
# EM creeps towards a boundary maximum geometrically and stops short of it.
_SNAP = 1e-4
# Restarts whose log-likelihood is within this of the best count as reaching it.
_SAME_MAXIMUM = 1e-6
_ACCELERATIONS = ("squarem", "none")
_RESTART_KEYS = (
    "initial_thetas",
    "initial_weights",
    "thetas",
    "weights",
    "log_likelihood",
    "n_iter",
    "converged",
)


@dataclass(frozen=True)
class PosteriorTable:
    """For each distinct (heads, flips) pair: its count and the posterior of each coin.

    Shapes: ``heads``, ``trials``, ``counts`` (M,), ordered by (trials, heads);
    ``posterior`` (M, K) with columns in the order of ``thetas_``.
    """

    heads: np.ndarray
    trials: np.ndarray
    counts: np.ndarray
    posterior: np.ndarray


class BinomialMixture(BaseEstimator):
    """Mixture of K binomials (coins) fitted by EM to heads counts, one count per draw.

    ``weights`` is ``"learn"`` (estimate the mixing weights) or ``"equal"`` (fixed at 1/K).
    ``init`` is ``"kmeans"``, ``"random"``, an array of K initial thetas, or a mapping
    ``{"thetas": [...], "weights": [...]}`` (a warm start; weights are ignored with
    ``weights="equal"``). An explicit start is one run, joined by ``n_random_init`` runs
    from screened random starts.
    ``acceleration`` is ``"squarem"`` (default) or ``"none"`` (plain EM).
    ``random_state`` (None, an int, a numpy Generator or a RandomState) seeds one numpy
    Generator per fit.

    Stopping rule (see ``shared.estimation._em``): a run has converged when an iteration
    raised the log-likelihood by less than ``tol`` *and* every free parameter's gradient,
    in logit(theta) and log(weight) coordinates, is below ``gtol`` (in units of expected
    heads or draws); a theta on 0 or 1 or a weight at its floor is not free and only needs
    a gradient pointing outwards. Under SQUAREM one iteration is one cycle of two EM
    steps, an extrapolation and a stabilising EM step (falling back to plain EM when the
    extrapolation loses likelihood), followed from iteration 4 (after a screen, see below,
    from the second iteration after it) by a damped Newton step kept only if it does not
    lower the likelihood (beyond rounding); while full Newton steps keep succeeding, an
    iteration is the Newton step alone. ``n_iter_`` counts these iterations (plain EM
    steps with ``acceleration="none"``) and ``n_em_steps_`` the EM and Newton steps.
    ``tol=0`` runs exactly ``max_iter`` iterations. A run stopped by ``max_iter`` has
    ``converged_=False`` and warns.

    With ``"kmeans"`` or ``"random"``, each of the ``n_init`` restarts is the survivor of
    a screen: ten times as many short runs (at least 50; a fifth of them with one coin on
    the boundary) take 5 plain EM steps together, and the best run of each distinct basin,
    then the next best, go on to convergence from where the screen left them (a screen's
    steps count as iterations). ``restarts_`` describes the survivors.

    Fitted attributes: ``thetas_`` (ascending), ``weights_``, ``log_likelihood_`` (total,
    with binomial coefficients), ``n_iter_``, ``n_em_steps_``, ``converged_``,
    ``gradient_`` (the largest free-gradient component at the end), ``restarts_``
    (JSON-ready dicts), ``restart_summary_``, ``log_likelihood_history_``,
    ``trajectory_`` (``{"log_likelihood": (T,), "thetas": (T, K)}`` after each iteration of
    the best run, columns in the order of ``thetas_``), ``averaged_thetas_``,
    ``averaged_weights_``, ``averaged_std_``, ``standard_errors_`` (NaN on the boundary),
    ``n_draws_``, ``pairs_`` ((M, 3) distinct [heads, flips, count] rows), ``bic_`` and
    ``icl_`` (on the training data). After EM, a theta within 1e-4 of 0 or 1 is moved onto
    the boundary when that does not lower the likelihood, and Newton steps on the observed
    information polish the best run when it did not converge, so ``log_likelihood_`` can
    exceed the history's last entry.
    """

    def __init__(
        self,
        n_components: int = 2,
        *,
        weights: str = "learn",
        n_init: int = 10,
        init: str | ArrayLike | Mapping[str, ArrayLike] = "kmeans",
        tol: float = 1e-8,
        gtol: float = 1e-6,
        max_iter: int = 1000,
        acceleration: str = "squarem",
        n_random_init: int = 0,
        random_state: Any = None,
    ) -> None:
        self.n_components = n_components
        self.weights = weights
        self.n_init = n_init
        self.init = init
        self.tol = tol
        self.gtol = gtol
        self.max_iter = max_iter
        self.acceleration = acceleration
        self.n_random_init = n_random_init
        self.random_state = random_state

    def fit(
        self,
        heads: ArrayLike,
        trials: ArrayLike | int,
        sample_weight: ArrayLike | None = None,
    ) -> BinomialMixture:
        """Estimate thetas and weights from heads counts and flips per draw.

        ``sample_weight`` gives each draw's integer multiplicity (e.g. the count column of
        ``[heads, flips, count]`` rows); the draws are never expanded.
        """
        self._fit_table(tally_draws(heads, trials, sample_weight))
        self._warn_unless_converged(stacklevel=3)
        return self

    def _fit_table(self, table: CountTable) -> BinomialMixture:
        """Fit to the distinct pairs of ``table`` (without the convergence warning)."""
        k = check_n_components(self.n_components, table.max_trials)
        if table.n_pairs < k:
            raise ValueError(
                f"n_components={k} needs at least {k} distinct (heads, flips) pairs, but the "
                f"draws have only {table.n_pairs}"
            )
        learn = self._check_weights()
        max_iter = check_positive_int(self.max_iter, "max_iter")
        tol = self._check_tolerance("tol")
        gtol = self._check_tolerance("gtol")
        if self.acceleration not in _ACCELERATIONS:
            raise ValueError(f"acceleration must be 'squarem' or 'none', got {self.acceleration!r}")
        rng = _generator(self.random_state)
        init_thetas, init_weights, n_fixed = self._starts(table, k, learn, rng)
        settings = {
            "learn": learn,
            "tol": tol,
            "gtol": gtol,
            "accelerate": self.acceleration == "squarem",
        }
        runs, starts = self._run(table, init_thetas, init_weights, n_fixed, max_iter, settings)
        self._store(table, runs, init_thetas[starts], init_weights[starts], learn)
        return self

    def _warn_unless_converged(self, stacklevel: int) -> None:
        """Warn, with ``stacklevel`` counted from here, when the best run did not converge."""
        if not self.converged_:
            max_iter = check_positive_int(self.max_iter, "max_iter")
            tol, gtol = self._check_tolerance("tol"), self._check_tolerance("gtol")
            warnings.warn(
                f"EM did not converge in max_iter={max_iter} iterations (tol={tol}, "
                f"gtol={gtol}); increase max_iter or tol",
                ConvergenceWarning,
                stacklevel=stacklevel,
            )

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

    def posterior_table(self) -> PosteriorTable:
        """The training data's distinct (heads, flips) pairs, counts and coin posteriors."""
        check_is_fitted(self, "pairs_")
        heads, trials, counts = self.pairs_.T
        proba = self.predict_proba(heads, trials)
        return PosteriorTable(heads.copy(), trials.copy(), counts.copy(), proba)

    def score_samples(self, heads: ArrayLike, trials: ArrayLike | int) -> np.ndarray:
        """Log-likelihood of each draw, including the binomial coefficient."""
        check_is_fitted(self, "thetas_")
        h, n = check_counts(heads, trials)
        return self._log_evidence(h, n)

    def score(
        self, heads: ArrayLike, trials: ArrayLike | int, sample_weight: ArrayLike | None = None
    ) -> float:
        """Mean log-likelihood per draw (weighted by ``sample_weight``)."""
        samples = self.score_samples(heads, trials)
        weight = self._weight(sample_weight, samples.size)
        return float(weight @ samples / weight.sum())

    def bic(
        self, heads: ArrayLike, trials: ArrayLike | int, sample_weight: ArrayLike | None = None
    ) -> float:
        """Bayesian information criterion on the given draws (lower is better)."""
        samples = self.score_samples(heads, trials)
        weight = self._weight(sample_weight, samples.size)
        return float(-2 * (weight @ samples) + self.n_parameters_ * np.log(weight.sum()))

    def aic(
        self, heads: ArrayLike, trials: ArrayLike | int, sample_weight: ArrayLike | None = None
    ) -> float:
        """Akaike information criterion on the given draws (lower is better)."""
        samples = self.score_samples(heads, trials)
        weight = self._weight(sample_weight, samples.size)
        return float(-2 * (weight @ samples) + 2 * self.n_parameters_)

    def icl(
        self, heads: ArrayLike, trials: ArrayLike | int, sample_weight: ArrayLike | None = None
    ) -> float:
        """ICL on the given draws: BIC plus twice the posteriors' entropy (lower is better)."""
        weight = self._weight(sample_weight, np.asarray(heads).size)
        entropy = classification_entropy(self.predict_proba(heads, trials), weight)
        return self.bic(heads, trials, sample_weight) + 2.0 * entropy

    def degenerate_components(self, theta_tolerance: float = 1e-3) -> Degeneracy:
        """Components with weight below 1/N, and pairs of thetas within ``theta_tolerance``."""
        check_is_fitted(self, "thetas_")
        return degenerate_components(
            self.thetas_, self.weights_, self.n_draws_, theta_tolerance=theta_tolerance
        )

    def select_components(
        self,
        heads: ArrayLike,
        trials: ArrayLike | int,
        max_components: int,
        *,
        sample_weight: ArrayLike | None = None,
        return_icl: bool = False,
    ) -> tuple[int, dict[int, float]] | tuple[int, dict[int, float], dict[int, float]]:
        """Fit K = 1 .. the cap of :func:`component_limit`; return the best K by BIC and
        every K's BIC (and, with ``return_icl``, every K's ICL as a third item).

        Uses this estimator's settings apart from ``n_components`` and leaves it unfitted.
        """
        table = tally_draws(heads, trials, sample_weight)
        top = component_limit(max_components, n_pairs=table.n_pairs, max_trials=table.max_trials)
        bics: dict[int, float] = {}
        icls: dict[int, float] = {}
        for k in range(1, top + 1):
            model = self.__class__(**{**self.get_params(), "n_components": k})
            model._fit_table(table)._warn_unless_converged(stacklevel=3)
            bics[k], icls[k] = model.bic_, model.icl_
        best = min(bics, key=lambda k: (bics[k], k))
        return (best, bics, icls) if return_icl else (best, bics)

    @property
    def n_parameters_(self) -> int:
        """Free parameters: K thetas, plus K - 1 weights when they are learned."""
        check_is_fitted(self, "thetas_")
        k = self.thetas_.size
        return 2 * k - 1 if self.weights == "learn" else k

    def _weight(self, sample_weight: ArrayLike | None, n_draws: int) -> np.ndarray:
        """Multiplicities for ``n_draws`` draws: ones, or the checked ``sample_weight``."""
        if sample_weight is None:
            return np.ones(n_draws)
        return check_sample_weight(sample_weight, n_draws)

    def _check_weights(self) -> bool:
        """Return True when the weights are learned."""
        if self.weights not in ("learn", "equal"):
            raise ValueError(f"weights must be 'learn' or 'equal', got {self.weights!r}")
        return self.weights == "learn"

    def _check_tolerance(self, name: str) -> float:
        """Return the tolerance ``name`` as a non-negative float."""
        value = getattr(self, name)
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}") from exc
        if not number >= 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        return number

    def _starts(
        self, table: CountTable, k: int, learn: bool, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Candidate starting thetas and weights, shapes (S, K), and how many of the first
        rows are explicit starts that always run to the end (0 or 1)."""
        if isinstance(self.init, str):
            n_init = check_positive_int(self.n_init, "n_init")
            if self.init not in ("kmeans", "random"):
                raise ValueError(
                    f"init must be 'kmeans', 'random' or an array of {k} thetas, got {self.init!r}"
                )
            thetas, weights = self._seeds(table, k, n_init, self.init, rng)
            n_fixed = 0
        else:
            thetas, weights = self._explicit_init(k)
            n_fixed = 1
            n_random = check_positive_int(self.n_random_init, "n_random_init", minimum=0)
            if n_random:
                more_thetas, more_weights = self._seeds(table, k, n_random, "random", rng)
                thetas = np.vstack((thetas, more_thetas))
                weights = np.vstack((weights, more_weights))
        if not learn:
            weights = np.full_like(weights, 1.0 / k)
        return thetas, weights, n_fixed

    def _seeds(
        self, table: CountTable, k: int, n_runs: int, kind: str, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Screening seeds for ``n_runs`` restarts of ``kind`` ("kmeans" or "random")."""
        n_seeds = max(_MIN_TRIALS, _TRIALS_PER_RESTART * n_runs)
        if kind == "kmeans":
            thetas, weights = kmeans_seeds(table, k, n_seeds, rng)
        else:
            thetas, weights = random_seeds(k, n_seeds, rng)
        boundary_starts(table, thetas, weights, _BOUNDARY_SHARE, rng)
        return thetas, weights

    def _explicit_init(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The user's start: thetas kept inside [EPS, 1 - EPS] and weights, shapes (1, K)."""
        given = self.init
        weights = None
        if isinstance(given, Mapping):
            if "thetas" not in given or set(given) - {"thetas", "weights"}:
                raise ValueError(
                    f"init as a mapping needs 'thetas' and optionally 'weights', "
                    f"got keys {sorted(given)}"
                )
            weights = given.get("weights")
            given = given["thetas"]
        try:
            thetas = np.asarray(given, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"init must be 'kmeans', 'random' or {k} thetas: {exc}") from exc
        if thetas.shape != (k,):
            raise ValueError(f"init must hold n_components={k} thetas, got shape {thetas.shape}")
        if not np.all((thetas >= 0) & (thetas <= 1)):
            raise ValueError(f"initial thetas must lie in [0, 1], got {thetas.tolist()}")
        return np.clip(thetas, EPS, 1 - EPS)[None, :], self._initial_weights(weights, k)

    def _initial_weights(self, weights: Any, k: int) -> np.ndarray:
        """The warm start's weights, checked and normalised (1/K each when not given); (1, K)."""
        if weights is None:
            return np.full((1, k), 1.0 / k)
        try:
            w = np.asarray(weights, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"initial weights must be {k} numbers: {exc}") from exc
        if w.shape != (k,):
            raise ValueError(f"init weights must hold n_components={k} values, got {w.shape}")
        if not (np.all(np.isfinite(w)) and np.all(w >= 0) and abs(w.sum() - 1.0) < 1e-6):
            raise ValueError(f"initial weights must be non-negative and sum to 1, got {w.tolist()}")
        w = np.maximum(w, WEIGHT_FLOOR)
        return (w / w.sum())[None, :]

    def _run(
        self,
        table: CountTable,
        thetas: np.ndarray,
        weights: np.ndarray,
        n_fixed: int,
        max_iter: int,
        settings: dict[str, Any],
    ) -> tuple[Runs, np.ndarray]:
        """Screen many short runs, then run the best of them to convergence.

        The first ``n_fixed`` starts always go on; the others compete for ``n_init``
        places (``n_random_init`` after an explicit start). Returns the runs and, for
        each, the index of its starting point.
        """
        if thetas.shape[0] == 1:
            runs = run_em(table, thetas, weights, max_iter=max_iter, **settings)
            return runs, np.zeros(1, dtype=np.int64)
        places = self.n_random_init if n_fixed else self.n_init
        n_keep = min(n_fixed + check_positive_int(places, "n_init"), thetas.shape[0])
        # The screen only ranks basins: plain EM steps are the cheapest way to do that.
        return run_screened(
            table,
            thetas,
            weights,
            choose=lambda screen: _diverse_best(screen, n_keep, n_fixed),
            screen_iter=_SCREEN_ITER,
            max_iter=max_iter,
            **settings,
        )

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
        best = int(runs.log_likelihood.argmax())
        # A converged run already has a tiny gradient; Newton pays for the others.
        if self.acceleration == "squarem" and not runs.converged[best]:
            runs.thetas[best], runs.weights[best], runs.log_likelihood[best] = newton_polish(
                table,
                runs.thetas[best],
                runs.weights[best],
                learn,
                float(runs.log_likelihood[best]),
            )
        order = np.argsort(runs.thetas, axis=1, kind="stable")
        every = np.arange(order.shape[0])[:, None]
        thetas, weights = runs.thetas[every, order], runs.weights[every, order]
        self.thetas_ = thetas[best].copy()
        self.weights_ = weights[best].copy()
        self.log_likelihood_ = float(runs.log_likelihood[best])
        self.n_iter_ = int(runs.n_iter[best])
        self.n_em_steps_ = int(runs.n_steps[best])
        self.converged_ = bool(runs.converged[best])
        self.gradient_ = float(runs.gradient[best])
        self.log_likelihood_history_ = runs.history[: self.n_iter_, best].copy()
        self.trajectory_ = {
            "log_likelihood": self.log_likelihood_history_.copy(),
            "thetas": runs.theta_history[: self.n_iter_, best][:, order[best]],
        }
        lls = runs.log_likelihood.tolist()
        columns = zip(
            init_thetas.tolist(),
            init_weights.tolist(),
            thetas.tolist(),
            weights.tolist(),
            lls,
            runs.n_iter.tolist(),
            runs.converged.tolist(),
            strict=True,
        )
        self.restarts_ = [dict(zip(_RESTART_KEYS, values, strict=True)) for values in columns]
        self.restart_summary_ = _restart_summary(lls)
        n_runs = thetas.shape[0]
        self.averaged_thetas_ = np.add.reduce(thetas, 0) / n_runs
        self.averaged_weights_ = np.add.reduce(weights, 0) / n_runs
        # numpy's std, without its Python layer: the root mean square deviation.
        spread = thetas - self.averaged_thetas_
        np.multiply(spread, spread, out=spread)
        self.averaged_std_ = np.sqrt(np.add.reduce(spread, 0) / n_runs)
        # One E-step at the fit serves the standard errors and the ICL.
        resp = e_step(table, self.thetas_[None, :], np.log(self.weights_)[None, :])[0]
        info = information_from_posterior(table, resp, self.thetas_, self.weights_, learn)
        self.standard_errors_ = errors_from_information(info, self.thetas_)
        self.n_draws_ = table.n_draws
        pairs = np.empty((table.n_pairs, 3), dtype=np.int64)
        pairs[:, 0], pairs[:, 1] = table.heads, table.trials
        np.rint(table.counts, out=pairs[:, 2], casting="unsafe")
        self.pairs_ = pairs
        k = self.thetas_.size
        n_parameters = 2 * k - 1 if learn else k
        self.bic_ = float(-2 * self.log_likelihood_ + n_parameters * np.log(table.n_draws))
        self.icl_ = self.bic_ + 2.0 * classification_entropy(resp[0].T, table.counts)

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
    heads: ArrayLike,
    trials: ArrayLike | int,
    max_components: int,
    *,
    sample_weight: ArrayLike | None = None,
    return_icl: bool = False,
    **settings: Any,
) -> tuple[int, dict[int, float]] | tuple[int, dict[int, float], dict[int, float]]:
    """Best K by BIC among 1 .. the cap, every K's BIC (and ICL); ``settings`` as for the class."""
    return BinomialMixture(**settings).select_components(
        heads, trials, max_components, sample_weight=sample_weight, return_icl=return_icl
    )


def _generator(random_state: Any) -> np.random.Generator:
    """The fit's random generator: seeded from an int (or fresh for None), a Generator as
    given, or seeded by one draw from a RandomState (which then advances).

    A Generator, not scikit-learn's RandomState: seeding a RandomState (the Mersenne
    Twister's 624-word state) costs more than a whole fit of a few dozen draws.
    """
    if random_state is None or isinstance(random_state, numbers.Integral | np.random.Generator):
        return np.random.default_rng(random_state)
    state = check_random_state(random_state)  # raises for anything else
    return np.random.default_rng(int(state.randint(np.iinfo(np.int32).max)))


def _restart_summary(log_likelihoods: Sequence[float]) -> dict[str, Any]:
    """How many restarts reached the best log-likelihood (within 1e-6) and their spread."""
    # Python on the few restarts: each numpy reduction costs more than the arithmetic.
    values = sorted(float(v) for v in log_likelihoods)
    n = len(values)
    best, worst = values[-1], values[0]
    half = n // 2
    mean = sum(values) / n
    return {
        "n_restarts": n,
        "n_at_best": sum(v >= best - _SAME_MAXIMUM for v in values),
        "tolerance": _SAME_MAXIMUM,
        "best": best,
        "worst": worst,
        "median": values[half] if n % 2 else (values[half - 1] + values[half]) / 2,
        "spread": best - worst,
        "std": math.sqrt(sum((v - mean) ** 2 for v in values) / n),
    }


def _diverse_best(runs: Runs, n_keep: int, n_fixed: int = 0) -> np.ndarray:
    """Indices of ``n_keep`` runs: the first ``n_fixed``, then the best of each distinct
    basin, then the next best.

    After a short screen a slow run towards a better but flat maximum can trail many runs
    heading for one worse point; keeping one run per basin keeps it in the race.
    """
    ll = runs.log_likelihood
    # Sorted thetas, one row per coin: a run's basin is every run within _SAME_BASIN of it
    # in all of them.
    key = np.sort(runs.thetas, axis=1).T.copy()  # (K, R)
    open_ll = ll.copy()
    open_ll[:n_fixed] = -np.inf
    chosen: list[int] = list(range(n_fixed))
    while len(chosen) < n_keep:
        pick = int(open_ll.argmax())
        if open_ll[pick] == -np.inf:
            break
        chosen.append(pick)
        gap = key - key[:, pick : pick + 1]
        np.abs(gap, out=gap)
        widest = gap[0]
        for row in gap[1:]:
            np.maximum(widest, row, out=widest)
        open_ll[widest <= _SAME_BASIN] = -np.inf
    if len(chosen) < n_keep:
        taken = np.zeros(ll.size, dtype=bool)
        taken[chosen] = True
        rest = np.argsort(-ll, kind="stable")
        rest = rest[~taken[rest]]
        chosen.extend(rest[: n_keep - len(chosen)].tolist())
    return np.array(chosen, dtype=np.int64)


def _snap_to_boundary(table: CountTable, runs: Runs) -> None:
    """Move thetas near 0 or 1 onto the boundary when that does not lower the likelihood."""
    thetas = runs.thetas
    # One test over all runs settles the usual case of no theta near the boundary.
    if thetas.min() - EPS >= _SNAP and (1 - EPS) - thetas.max() >= _SNAP:
        return
    for j in range(thetas.shape[1]):
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
