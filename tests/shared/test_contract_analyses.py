"""The analyses in the contract: request and result fields read back as written, and jobs
stored before they existed still load."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from shared.contract import (
    Bootstrap,
    BootstrapIntervals,
    ComponentsTest,
    ComponentsTestResult,
    EmEstimate,
    JobError,
    JobRequest,
    JobResult,
    JobSpec,
    LikelihoodRatioTest,
    Part,
)
from shared.events import entry_event
from tests.factories import SPEC, em, part

INTERVALS = BootstrapIntervals(
    replicates=200, kind="parametric", level=0.9, thetas=((0.2, 0.3), (0.7, 0.8)),
    weights=((0.4, 0.6), (0.4, 0.6)), failed=1, ambiguous=2,
)
TEST = ComponentsTestResult(
    replicates=99,
    tests=(LikelihoodRatioTest(1, 150.4, 0.01), LikelihoodRatioTest(2, 0.3, 0.62)),
    selected=2,
)


def test_the_spec_carries_both_analyses_and_reads_them_back():
    spec = dataclasses.replace(SPEC, bootstrap=Bootstrap(500, "parametric", 0.9),
                               test_components=ComponentsTest(3, 99))
    data = json.loads(json.dumps(spec.to_json()))
    assert data["bootstrap"] == {"replicates": 500, "kind": "parametric", "level": 0.9}
    assert data["test_components"] == {"max_components": 3, "replicates": 99}
    assert JobSpec.from_json(data) == spec
    assert spec.has_replicates and not SPEC.has_replicates


def test_a_spec_stored_before_the_analyses_loads_without_them():
    old = {"source": None, "n_components": 2, "max_components": 4, "weights": "learn",
           "restarts": 3, "methods": ["em", "gmm"], "seed": 1, "callback": None}
    spec = JobSpec.from_json(old)
    assert spec == SPEC and spec.bootstrap is None and spec.test_components is None
    assert spec.to_json()["bootstrap"] is None and spec.to_json()["test_components"] is None


def test_a_request_without_the_analyses_keeps_the_fingerprint_it_had_before_them():
    request = JobRequest(n_components=2, max_components=4, weights="learn", restarts=10,
                         methods=("em",), seed=None, counts=((1, 4), (3, 4)))
    # The request's fields as they were before the analyses existed, digested by hand.
    before = {"n_components": 2, "max_components": 4, "weights": "learn", "restarts": 10,
              "methods": ["em"], "seed": None, "source": None, "draws": None,
              "counts": [[1, 4], [3, 4]], "callback": None}
    text = json.dumps(before, sort_keys=True, separators=(",", ":"))
    assert request.fingerprint() == hashlib.sha256(text.encode()).hexdigest()
    asked = dataclasses.replace(request, bootstrap=Bootstrap(100))
    assert asked.fingerprint() != request.fingerprint()
    assert asked.spec(7).bootstrap == Bootstrap(100)


def test_the_em_estimate_carries_its_intervals_only_when_asked():
    plain = em()
    assert "bootstrap" not in plain.to_json()
    boot = dataclasses.replace(plain, bootstrap=INTERVALS)
    data = json.loads(json.dumps(boot.to_json()))
    assert data["bootstrap"] == {
        "replicates": 200, "kind": "parametric", "level": 0.9,
        "thetas": [[0.2, 0.3], [0.7, 0.8]], "weights": [[0.4, 0.6], [0.4, 0.6]],
        "failed": 1, "ambiguous": 2,
    }
    assert EmEstimate.from_json(data) == boot
    assert EmEstimate.from_json(plain.to_json()).bootstrap is None
    # Every replicate failed: no intervals at all.
    empty = dataclasses.replace(INTERVALS, thetas=(), weights=(), failed=200)
    assert BootstrapIntervals.from_json(empty.to_json()) == empty


def test_the_result_carries_the_test_beside_bic_and_icl():
    result = JobResult.merge([part("em")], components_test=TEST)
    data = json.loads(json.dumps(result.to_json()))
    assert data["components_test"] == {
        "replicates": 99, "selected": 2,
        "tests": [{"k": 1, "statistic": 150.4, "p_value": 0.01},
                  {"k": 2, "statistic": 0.3, "p_value": 0.62}],
    }
    assert JobResult.from_json(data) == result
    without = JobResult.merge([part("em")])
    assert "components_test" not in without.to_json()
    assert JobResult.from_json(without.to_json()).components_test is None


def test_a_test_that_could_not_run_is_null_with_its_error():
    error = JobError(code="fit_failed", message="components test: too few pairs")
    result = JobResult.merge([part("em")], test_error=error)
    data = result.to_json()
    assert data["components_test"] is None and data["em"] is not None
    assert data["errors"] == {"components_test": error.to_json()}
    assert not result.failed
    assert JobResult.from_json(data) == result


def test_a_part_keeps_its_bootstrap_between_steps():
    boot = Part("em", 2, None, dataclasses.replace(em(), bootstrap=INTERVALS))
    assert Part.from_json(json.loads(json.dumps(boot.to_json()))) == boot


def test_progress_events_carry_the_replicates_as_the_job_does():
    event = entry_event("5-0", {
        "type": "progress", "draws_fetched": "30", "draws_total": "30",
        "replicates_analysis": "components_test", "replicates_stage": "2",
        "replicates_done": "40", "replicates_total": "99",
    })
    assert event.data == {"draws_fetched": 30, "draws_total": 30, "replicates": {
        "analysis": "components_test", "stage": 2, "done": 40, "total": 99}}
    draws = entry_event("6-0", {"type": "progress", "draws_fetched": "3", "draws_total": "9"})
    assert draws.data == {"draws_fetched": 3, "draws_total": 9}
