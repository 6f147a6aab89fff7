"""Turning fits into JSON-ready results."""

from __future__ import annotations

import json
import math

import numpy as np

from shared.draws import expand_counts
from shared.estimation import BinomialMixture
from shared.fitting import merge_results, run_method

SPEC = {"n_components": 2, "max_components": 3, "weights": "learn", "restarts": 5, "seed": 3}
COUNTS = [[0, 10, 3], [1, 10, 5], [2, 10, 4], [8, 10, 4], [9, 10, 6], [10, 10, 2]]


def test_em_part_matches_the_estimator():
    part = run_method("em", COUNTS, SPEC)
    heads, trials = expand_counts(COUNTS)
    model = BinomialMixture(n_components=2, n_init=5, random_state=3).fit(heads, trials)
    assert part["method"] == "em" and part["n_components"] == 2 and part["bic"] is None
    np.testing.assert_allclose(part["estimates"]["thetas"], model.thetas_)
    assert part["estimates"]["log_likelihood"] == model.log_likelihood_
    assert part["estimates"]["averaged"]["restarts"] == 5
    json.dumps(part, allow_nan=False)


def test_boundary_standard_errors_become_null():
    # All-tails and all-heads coins put both thetas on the boundary.
    part = run_method("em", [[0, 10, 5], [10, 10, 5]], SPEC)
    assert part["estimates"]["standard_errors"] == [None, None]
    json.dumps(part, allow_nan=False)


def test_auto_picks_the_lowest_bic():
    part = run_method("gmm", COUNTS, {**SPEC, "n_components": "auto"})
    bic = part["bic"]
    assert set(bic) == {"1", "2", "3"}
    assert part["n_components"] == int(min(bic, key=bic.get))
    assert len(part["estimates"]["means"]) == part["n_components"]
    assert all(math.isfinite(v) for v in bic.values())


def test_merge_keeps_each_method():
    parts = [run_method(m, COUNTS, SPEC) for m in ("em", "gmm")]
    result = merge_results(parts)
    assert set(result) == {"n_components", "bic", "em", "gmm"}
    assert result["gmm"] == parts[1]["estimates"]
