"""Run a job's estimators on its counts and turn the fits into the typed parts of its result.

Pure: the workers call these with data they read from the store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.contract import Averaged, EmEstimate, GmmEstimate, JobError, JobSpec, Part
from shared.draws import expand_counts
from shared.estimation import BinomialMixture, fit_gmm_proportions
from shared.methods import EM, GMM
from shared.status import ErrorCode


def _floats(values: Any) -> tuple[float | None, ...]:
    # JSON has no NaN: a standard error at the boundary is reported as null.
    return tuple(None if not math.isfinite(v) else float(v) for v in np.asarray(values, float))


def choose_components(
    heads: np.ndarray, trials: np.ndarray, spec: JobSpec
) -> tuple[int, dict[str, float] | None]:
    """The job's K, and the BIC per K tried when the job asked for ``"auto"``."""
    if not spec.chooses_components:
        return int(spec.n_components), None
    model = BinomialMixture(weights=spec.weights, n_init=spec.restarts, random_state=spec.seed)
    best, bics = model.select_components(heads, trials, spec.max_components)
    return int(best), {str(k): float(v) for k, v in sorted(bics.items())}


def fit_em(heads: np.ndarray, trials: np.ndarray, k: int, spec: JobSpec) -> EmEstimate:
    """The binomial-mixture EM's best restart and restart-averaged estimate."""
    model = BinomialMixture(
        n_components=k, weights=spec.weights, n_init=spec.restarts, random_state=spec.seed
    ).fit(heads, trials)
    return EmEstimate(
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
    )


def fit_gmm(heads: np.ndarray, trials: np.ndarray, k: int, spec: JobSpec) -> GmmEstimate:
    """The baseline: a Gaussian mixture on each draw's heads fraction, one k-means init."""
    fit = fit_gmm_proportions(heads, trials, n_components=k, random_state=spec.seed)
    return GmmEstimate(
        means=_floats(fit["means"]),
        weights=_floats(fit["weights"]),
        stds=_floats(fit["stds"]),
        converged=bool(fit["converged"]),
        iterations=int(fit["n_iter"]),
    )


_FITS = {EM: fit_em, GMM: fit_gmm}


def fit_methods(
    methods: Sequence[str],
    counts: Sequence[Sequence[int]],
    spec: JobSpec,
    *,
    max_gmm_draws: int,
) -> list[Part]:
    """Fit some methods to aggregated ``[heads, trials, count]`` rows (one row per distinct
    pair), choosing K once for all of them.

    A method that cannot fit these data gets a part carrying its error instead of an
    estimate, so that the other methods' estimates still make a result.
    """
    heads, trials = expand_counts(counts)
    try:
        k, bic = choose_components(heads, trials, spec)
    except ValueError as exc:
        error = JobError(code=ErrorCode.FIT_FAILED.value, message=f"choosing K: {exc}")
        return [Part(method, None, None, None, error) for method in methods]
    distinct = len(counts)
    if distinct < k:
        error = JobError(
            code=ErrorCode.FIT_FAILED.value,
            message=f"n_components={k} needs at least {k} distinct (heads, flips) pairs; "
            f"the draws have {distinct}",
        )
        return [Part(method, k, bic, None, error) for method in methods]
    parts = []
    for method in methods:
        if method == GMM and len(heads) > max_gmm_draws:
            # scikit-learn's GaussianMixture takes no sample weights: one row per draw.
            error = JobError(
                code=ErrorCode.TOO_MANY_DRAWS.value,
                message=f"the GMM baseline fits at most {max_gmm_draws} draws "
                f"(EMCOINS_MAX_GMM_DRAWS); this job has {len(heads)}",
            )
            parts.append(Part(method, k, bic, None, error))
            continue
        try:
            parts.append(Part(method, k, bic, _FITS[method](heads, trials, k, spec)))
        except ValueError as exc:
            # The data cannot support the fit (e.g. too few distinct draws for K coins).
            error = JobError(code=ErrorCode.FIT_FAILED.value, message=f"{method} fit: {exc}")
            parts.append(Part(method, k, bic, None, error))
    return parts
