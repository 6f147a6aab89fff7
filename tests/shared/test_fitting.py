"""Turning fits into the typed parts of a job's result, and those into JSON."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from shared import fitting
from shared.contract import JobResult, JobSpec
from shared.draws import expand_counts
from shared.estimation import BinomialMixture

fit_methods = functools.partial(fitting.fit_methods, max_gmm_draws=1_000_000)

SPEC = JobSpec(n_components=2, max_components=3, weights="learn", restarts=5,
               methods=("em", "gmm"), seed=3)
AUTO = JobSpec(**{**SPEC.__dict__, "n_components": "auto"})


def spec_with(**changes) -> JobSpec:
    return JobSpec(**{**SPEC.__dict__, **changes})
COUNTS = [[0, 10, 3], [1, 10, 5], [2, 10, 4], [8, 10, 4], [9, 10, 6], [10, 10, 2]]


def test_em_part_matches_the_estimator():
    [part] = fit_methods(["em"], COUNTS, SPEC)
    heads, trials = expand_counts(COUNTS)
    model = BinomialMixture(n_components=2, n_init=5, random_state=3).fit(heads, trials)
    assert part.method == "em" and part.n_components == 2 and part.bic is None
    np.testing.assert_allclose(part.estimate.thetas, model.thetas_)
    assert part.estimate.log_likelihood == model.log_likelihood_
    assert part.estimate.averaged.restarts == 5
    json.dumps(part.to_json(), allow_nan=False)


def test_boundary_standard_errors_become_null():
    # All-tails and all-heads coins put both thetas on the boundary.
    [part] = fit_methods(["em"], [[0, 10, 5], [10, 10, 5]], SPEC)
    assert part.to_json()["estimate"]["standard_errors"] == [None, None]
    json.dumps(part.to_json(), allow_nan=False)


def test_auto_picks_the_lowest_bic():
    [part] = fit_methods(["gmm"], COUNTS, AUTO)
    bic = part.bic
    assert set(bic) == {"1", "2", "3"}
    assert part.n_components == int(min(bic, key=bic.get))
    assert len(part.estimate.means) == part.n_components
    assert all(math.isfinite(v) for v in bic.values())


def test_auto_chooses_k_once_for_every_method():
    parts = fit_methods(["em", "gmm"], COUNTS, AUTO)
    assert parts[0].n_components == parts[1].n_components
    assert parts[0].bic == parts[1].bic
    assert len(parts[0].estimate.thetas) == len(parts[1].estimate.means) == parts[0].n_components


def test_merge_keeps_each_method_and_round_trips_through_json():
    parts = fit_methods(["em", "gmm"], COUNTS, SPEC)
    result = JobResult.merge(parts)
    data = result.to_json()
    assert list(data) == ["n_components", "bic", "icl", "warnings", "em", "gmm"]
    assert data["gmm"] == parts[1].estimate.to_json()
    assert JobResult.from_json(json.loads(json.dumps(data))) == result


def test_a_method_not_asked_for_has_no_key():
    result = JobResult.merge(fit_methods(["gmm"], COUNTS, SPEC))
    assert set(result.to_json()) == {"n_components", "bic", "icl", "warnings", "gmm"}


def test_a_method_that_cannot_fit_is_null_with_its_error_and_the_other_stands():
    parts = fitting.fit_methods(["em", "gmm"], COUNTS, SPEC, max_gmm_draws=23)
    result = JobResult.merge(parts)
    data = result.to_json()
    assert data["gmm"] is None and data["em"]["thetas"]
    assert data["errors"]["gmm"]["code"] == "too_many_draws"
    assert "EMCOINS_MAX_GMM_DRAWS" in data["errors"]["gmm"]["message"]
    assert "24" in data["errors"]["gmm"]["message"]  # the job's draws: 3+5+4+4+6+2
    assert not result.failed
    assert JobResult.from_json(json.loads(json.dumps(data))) == result


def test_fewer_distinct_draws_than_coins_is_a_method_error_not_a_crash():
    parts = fit_methods(["em", "gmm"], [[5, 10, 3]], spec_with(n_components=2))
    result = JobResult.merge(parts)
    assert result.failed and set(result.errors) == {"em", "gmm"}
    assert all(error.code == "fit_failed" for error in result.errors.values())


# Geissler's Saxony families: families of 12 children with 0, 1, ..., 12 boys.
GEISSLER = [[boys, 12, n] for boys, n in enumerate(
    [3, 24, 104, 286, 670, 1033, 1343, 1112, 829, 478, 181, 45, 7]
)]


def test_posterior_rows_agree_with_the_estimators_own_table():
    from shared.posteriors import posterior_rows

    heads, trials, counts = (np.array(c) for c in zip(*GEISSLER, strict=True))
    model = BinomialMixture(n_components=2, random_state=0).fit(
        heads, trials, sample_weight=counts
    )
    table = model.posterior_table()
    rows = [[h, n, c] for h, n, c in zip(table.heads, table.trials, table.counts, strict=True)]
    np.testing.assert_allclose(
        posterior_rows(rows, model.thetas_, model.weights_), table.posterior, rtol=1e-9
    )


def test_a_one_coin_fit_of_overdispersed_data_warns():
    [part] = fit_methods(["em"], GEISSLER, spec_with(n_components=1, methods=("em",)))
    codes = [w.code for w in part.warnings]
    assert codes == ["overdispersed"]
    assert "Tarone" in part.warnings[0].message
    # The draws were fitted as weighted rows: 6,115 families, 13 distinct pairs.
    assert sum(pair[2] for pair in part.estimate.posteriors.pairs) == 6115
    assert len(part.estimate.posteriors.pairs) == 13
    assert not part.estimate.posteriors.truncated


def test_auto_reports_icl_beside_bic_and_the_result_shows_the_work():
    parts = fit_methods(["em"], GEISSLER, spec_with(n_components="auto", max_components=3,
                                                    methods=("em",)))
    result = JobResult.merge(parts).to_json()
    assert set(result["icl"]) == set(result["bic"]) == {"1", "2", "3"}
    assert result["n_components"] == int(min(result["bic"], key=result["bic"].get))
    em = result["em"]
    assert len(em["trajectory"]["log_likelihood"]) == len(em["trajectory"]["thetas"]) >= 1
    assert em["trajectory"]["log_likelihood"][-1] == pytest.approx(em["log_likelihood"])
    assert 1 <= em["restart_summary"]["at_best"] <= em["restart_summary"]["restarts"]
    assert all(abs(sum(row) - 1) < 1e-12 for row in em["posteriors"]["probabilities"])


def test_the_result_keeps_the_most_frequent_pairs_and_says_it_left_some_out():
    counts = [[h, 2000, 1 + (h % 7)] for h in range(1500)]
    [part] = fit_methods(["em"], counts, spec_with(methods=("em",), restarts=1))
    posteriors = part.estimate.posteriors
    assert posteriors.truncated and len(posteriors.pairs) == 1000
    kept_counts = [pair[2] for pair in posteriors.pairs]
    assert kept_counts == sorted(kept_counts, reverse=True)
    # Every pair with count 7 (the largest) is kept: 1500 // 7 + 1 of them.
    assert kept_counts.count(7) == len([h for h in range(1500) if h % 7 == 6])


def test_max_iter_reached_is_a_warning():
    heads, trials, counts = (np.array(c) for c in zip(*GEISSLER, strict=True))
    model = BinomialMixture(n_components=3, max_iter=2, random_state=0)
    with pytest.warns(ConvergenceWarning):
        model.fit(heads, trials, sample_weight=counts)
    codes = [w.code for w in fitting.em_warnings(model, fitting.Draws(GEISSLER))]
    assert "max_iter_reached" in codes
