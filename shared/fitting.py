"""Run a job's estimators on its counts and turn the fits into the typed parts of its result.

Pure: the workers call these with data they read from the store. EM fits the aggregated
``[heads, flips, count]`` rows with their counts as weights and never expands them; the GMM
baseline (scikit-learn takes no sample weights) expands them, up to a limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.contract import (
    Averaged,
    EmEstimate,
    FitWarning,
    GmmEstimate,
    JobError,
    JobSpec,
    Part,
    Posteriors,
    RestartSummary,
    Trajectory,
)
from shared.draws import expand_counts
from shared.estimation import BinomialMixture, fit_gmm_proportions, tarone_test
from shared.methods import EM, GMM
from shared.posteriors import most_frequent, posterior_rows
from shared.status import ErrorCode

# Rows of the posterior table kept in a job's result: the most frequent pairs. Every row
# is served by GET /jobs/<id>/posteriors.
POSTERIOR_ROWS_IN_RESULT = 1000
# Overdispersion of a one-coin fit is tested at this level (Tarone's test).
OVERDISPERSION_LEVEL = 0.01


def _floats(values: Any) -> tuple[float | None, ...]:
    # JSON has no NaN: a standard error at the boundary is reported as null.
    return tuple(None if not math.isfinite(v) else float(v) for v in np.asarray(values, float))


class Draws:
    """A job's aggregated draws as the estimators take them."""

    def __init__(self, counts: Sequence[Sequence[int]]):
        rows = np.asarray(counts, dtype=np.int64).reshape(-1, 3)
        self.rows = [list(map(int, row)) for row in rows]
        self.heads, self.trials, self.counts = rows[:, 0], rows[:, 1], rows[:, 2]
        self.total = int(self.counts.sum())


def choose_components(
    draws: Draws, spec: JobSpec, *, selected: int | None = None
) -> tuple[int, dict[str, float] | None, dict[str, float] | None]:
    """The job's K, and the BIC and ICL per K tried when the job asked for ``"auto"``: K is
    the BIC's choice, or ``selected`` when the components test chose it."""
    if not spec.chooses_components:
        return int(spec.n_components), None, None
    model = BinomialMixture(weights=spec.weights, n_init=spec.restarts, random_state=spec.seed)
    best, bics, icls = model.select_components(
        draws.heads, draws.trials, spec.max_components,
        sample_weight=draws.counts, return_icl=True,
    )
    return (
        int(best if selected is None else selected),
        {str(k): float(v) for k, v in sorted(bics.items())},
        {str(k): float(v) for k, v in sorted(icls.items())},
    )


def fit_em(draws: Draws, k: int, spec: JobSpec) -> tuple[EmEstimate, list[FitWarning]]:
    """The binomial-mixture EM's best restart, restart average, posteriors, trajectory and
    restart summary, with the warnings the fit calls for."""
    model = BinomialMixture(
        n_components=k, weights=spec.weights, n_init=spec.restarts, random_state=spec.seed
    ).fit(draws.heads, draws.trials, sample_weight=draws.counts)
    kept, truncated = most_frequent(draws.rows, POSTERIOR_ROWS_IN_RESULT)
    probabilities = posterior_rows(kept, model.thetas_, model.weights_)
    summary = model.restart_summary_
    estimate = EmEstimate(
        thetas=_floats(model.thetas_),
        weights=_floats(model.weights_),
        standard_errors=_floats(model.standard_errors_),
        log_likelihood=float(model.log_likelihood_),
        iterations=int(model.n_iter_),
        converged=bool(model.converged_),
        averaged=Averaged(
            thetas=_floats(model.averaged_thetas_),
            weights=_floats(model.averaged_weights_),
            std=_floats(model.averaged_std_),
            restarts=len(model.restarts_),
        ),
        posteriors=Posteriors(
            pairs=tuple(tuple(row) for row in kept),
            probabilities=tuple(tuple(float(p) for p in row) for row in probabilities),
            truncated=truncated,
        ),
        trajectory=Trajectory(
            log_likelihood=tuple(float(v) for v in model.trajectory_["log_likelihood"]),
            thetas=tuple(tuple(float(v) for v in row) for row in model.trajectory_["thetas"]),
        ),
        restart_summary=RestartSummary(
            restarts=int(summary["n_restarts"]),
            at_best=int(summary["n_at_best"]),
            tolerance=float(summary["tolerance"]),
            best=float(summary["best"]),
            worst=float(summary["worst"]),
            spread=float(summary["spread"]),
        ),
    )
    return estimate, em_warnings(model, draws)


def em_warnings(model: BinomialMixture, draws: Draws) -> list[FitWarning]:
    """``max_iter_reached``, ``degenerate_component`` and, for one coin, ``overdispersed``."""
    warnings = []
    if not model.converged_:
        warnings.append(FitWarning(
            "max_iter_reached",
            f"EM stopped after max_iter={model.max_iter} iterations before it converged; "
            "the estimates may be short of the maximum.",
        ))
    degeneracy = model.degenerate_components()
    if degeneracy.degenerate:
        warnings.append(FitWarning(
            "degenerate_component",
            f"A coin has a weight below 1/N (N={draws.total}) or two coins' thetas are within "
            f"{degeneracy.theta_tolerance:g}: fewer coins may describe the data as well.",
        ))
    if len(model.thetas_) == 1:
        test = tarone_test(
            draws.heads, draws.trials, sample_weight=draws.counts, level=OVERDISPERSION_LEVEL
        )
        if test.overdispersed:
            warnings.append(FitWarning(
                "overdispersed",
                f"One coin does not explain the spread of the draws (Tarone's test: "
                f"Z={test.statistic:.2f}, p={test.p_value:.2g} < {OVERDISPERSION_LEVEL}; "
                f"variance {test.dispersion:.2f} times the binomial's): try more coins.",
            ))
    return warnings


def fit_gmm(draws: Draws, k: int, spec: JobSpec) -> tuple[GmmEstimate, list[FitWarning]]:
    """The baseline: a Gaussian mixture on each draw's heads fraction, one k-means init."""
    heads, trials = expand_counts(draws.rows)
    fit = fit_gmm_proportions(heads, trials, n_components=k, random_state=spec.seed)
    estimate = GmmEstimate(
        means=_floats(fit["means"]),
        weights=_floats(fit["weights"]),
        stds=_floats(fit["stds"]),
        converged=bool(fit["converged"]),
        iterations=int(fit["n_iter"]),
    )
    return estimate, []


_FITS = {EM: fit_em, GMM: fit_gmm}


def fit_methods(
    methods: Sequence[str],
    counts: Sequence[Sequence[int]],
    spec: JobSpec,
    *,
    max_gmm_draws: int,
    selected: int | None = None,
) -> list[Part]:
    """Fit some methods to aggregated ``[heads, trials, count]`` rows (one row per distinct
    pair), choosing K once for all of them (``selected``: the components test's K, used
    instead of the BIC's when the job chooses K).

    A method that cannot fit these data gets a part carrying its error instead of an
    estimate, so that the other methods' estimates still make a result.
    """
    draws = Draws(counts)
    try:
        k, bic, icl = choose_components(draws, spec, selected=selected)
    except ValueError as exc:
        error = JobError(code=ErrorCode.FIT_FAILED.value, message=f"choosing K: {exc}")
        return [Part(method, None, None, None, error) for method in methods]
    distinct = len(draws.rows)
    if distinct < k:
        error = JobError(
            code=ErrorCode.FIT_FAILED.value,
            message=f"n_components={k} needs at least {k} distinct (heads, flips) pairs; "
            f"the draws have {distinct}",
        )
        return [Part(method, k, bic, None, error, icl) for method in methods]
    parts = []
    for method in methods:
        if method == GMM and draws.total > max_gmm_draws:
            # scikit-learn's GaussianMixture takes no sample weights: one row per draw.
            error = JobError(
                code=ErrorCode.TOO_MANY_DRAWS.value,
                message=f"the GMM baseline fits at most {max_gmm_draws} draws "
                f"(EMCOINS_MAX_GMM_DRAWS); this job has {draws.total}",
            )
            parts.append(Part(method, k, bic, None, error, icl))
            continue
        try:
            estimate, warnings = _FITS[method](draws, k, spec)
        except ValueError as exc:
            # The data cannot support the fit (e.g. too few distinct draws for K coins).
            error = JobError(code=ErrorCode.FIT_FAILED.value, message=f"{method} fit: {exc}")
            parts.append(Part(method, k, bic, None, error, icl))
            continue
        parts.append(Part(method, k, bic, estimate, None, icl, tuple(warnings)))
    return parts
