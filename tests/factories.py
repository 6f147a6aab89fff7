"""Typed contract values for tests: a spec, parts and results with given fields."""

from __future__ import annotations

import dataclasses
from typing import Any

from shared.contract import Averaged, EmEstimate, GmmEstimate, JobResult, JobSpec, Part, Source

SPEC = JobSpec(
    n_components=2, max_components=4, weights="learn", restarts=3, methods=("em", "gmm"), seed=1
)


def spec(*, source: tuple[str, int] | None = None, **changes: Any) -> JobSpec:
    """:data:`SPEC` with some fields changed; ``source`` as ``(url, draws)``."""
    if source is not None:
        changes["source"] = Source(*source)
    if "methods" in changes:
        changes["methods"] = tuple(changes["methods"])
    return dataclasses.replace(SPEC, **changes)


def gmm(means=(0.1, 0.9)) -> GmmEstimate:
    """A GMM estimate with these means."""
    return GmmEstimate(means=tuple(means), weights=(0.5, 0.5), stds=(0.1, 0.1),
                       converged=True, iterations=3)


def em(thetas=(0.2, 0.8)) -> EmEstimate:
    """An EM estimate with these thetas."""
    return EmEstimate(
        thetas=tuple(thetas), weights=(0.5, 0.5), standard_errors=(0.01, None),
        log_likelihood=-12.5, iterations=7, converged=True,
        averaged=Averaged(thetas=tuple(thetas), weights=(0.5, 0.5), std=(0.0, 0.0), restarts=3),
    )


def part(method: str, **fields: Any) -> Part:
    """A part of ``method`` for K=2, without BIC."""
    estimate = em(**fields) if method == "em" else gmm(**fields)
    return Part(method=method, n_components=2, bic=None, estimate=estimate)


def result(n_components: int = 1) -> JobResult:
    """A result with a GMM estimate only."""
    return JobResult(n_components=n_components, bic=None, gmm=gmm())


def plotted_result() -> JobResult:
    """Both methods' estimates for K=2, with the numbers the plotting tests draw."""
    return JobResult(
        n_components=2,
        bic=None,
        em=dataclasses.replace(
            em((0.25, 0.75)), weights=(0.4, 0.6), standard_errors=(0.04, 0.05)
        ),
        gmm=GmmEstimate(means=(0.24, 0.76), weights=(0.42, 0.58), stds=(0.05, 0.06),
                        converged=True, iterations=4),
    )
