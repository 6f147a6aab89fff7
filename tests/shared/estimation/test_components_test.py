"""The parametric bootstrap likelihood-ratio test for the number of coins."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from shared.estimation.components_test import (
    SIGNIFICANCE,
    TIE_TOLERANCE,
    components_test,
    fit_summary,
    full_fit,
    is_significant,
    lrt_chunk,
    null_and_alternative,
    observed_statistic,
    p_value,
)

GEISSLER = np.array(
    json.loads((Path(__file__).parents[3] / "examples" / "geissler_counts.json").read_text())[
        "counts"
    ]
)


def one_coin_rows(n_draws: int, flips: int, theta: float, seed: int):
    rng = np.random.default_rng(seed)
    heads, counts = np.unique(rng.binomial(flips, theta, n_draws), return_counts=True)
    return heads, np.full(heads.size, flips), counts


def two_coin_rows(n_draws: int, flips: int, seed: int):
    rng = np.random.default_rng(seed)
    theta = np.where(rng.random(n_draws) < 0.5, 0.2, 0.8)
    heads, counts = np.unique(rng.binomial(flips, theta), return_counts=True)
    return heads, np.full(heads.size, flips), counts


# --- p-values and the decision -------------------------------------------------------


def test_p_value_counts_replicates_at_least_the_observed_one():
    # Two of four reach 3.0: (1 + 2) / (4 + 1).
    assert p_value(3.0, [1.0, 2.0, 3.0, 4.0]) == pytest.approx(0.6)
    assert p_value(10.0, [1.0, 2.0, 3.0]) == pytest.approx(0.25)
    assert p_value(0.0, [0.0] * 19) == 1.0
    assert p_value(5.0, []) == 1.0


def test_p_value_treats_rounding_noise_as_a_tie():
    assert p_value(3.0, [3.0 - TIE_TOLERANCE / 2]) == 1.0
    assert p_value(3.0, [3.0 - 2 * TIE_TOLERANCE]) == 0.5
    # A k + 1 fit that lands on the k-coin maximum gives 0 up to rounding.
    assert p_value(1e-9, [0.0, 0.0, 0.0]) == 1.0


def test_the_test_rejects_at_p_equal_to_the_level():
    """With B = 99, p = 5/100 is a test of size exactly 0.05; rejecting only below it
    would give size 0.04."""
    assert SIGNIFICANCE == 0.05
    assert is_significant(p_value(10.0, [11.0] * 4 + [1.0] * 95))
    assert not is_significant(p_value(10.0, [11.0] * 5 + [1.0] * 94))
    assert is_significant(1 / 100) and not is_significant(0.0500001)


def test_the_statistic_is_twice_the_gain_and_never_negative():
    assert observed_statistic(-100.0, -98.5) == 3.0
    assert observed_statistic(-100.0, -100.5) == 0.0
    assert type(observed_statistic(-100, -99)) is float


# --- full-data fits ------------------------------------------------------------------


def test_null_and_alternative_fit_k_and_k_plus_one_coins():
    heads, trials, counts = two_coin_rows(400, 10, seed=1)
    null, alternative = null_and_alternative(heads, trials, counts, 1, restarts=5, seed=3)
    assert (null.thetas_.size, alternative.thetas_.size) == (1, 2)
    assert alternative.log_likelihood_ >= null.log_likelihood_
    summary = fit_summary(alternative)
    assert list(summary) == ["thetas", "weights", "log_likelihood"]
    assert json.loads(json.dumps(summary)) == summary
    # The single coin's MLE is the pooled heads fraction.
    assert null.thetas_[0] == pytest.approx((heads @ counts) / (trials @ counts))


def test_a_full_fit_depends_on_the_seed_and_the_number_of_coins_only():
    heads, trials, counts = two_coin_rows(300, 10, seed=2)
    as_alternative = null_and_alternative(heads, trials, counts, 1, restarts=4, seed=9)[1]
    as_null = null_and_alternative(heads, trials, counts, 2, restarts=4, seed=9)[0]
    assert fit_summary(as_alternative) == fit_summary(as_null)
    again = full_fit(heads, trials, counts, 2, restarts=4, seed=9)
    assert fit_summary(again) == fit_summary(as_null)


# --- replicates ----------------------------------------------------------------------


def stage_inputs(heads, trials, counts, k, seed=0):
    null, alternative = null_and_alternative(heads, trials, counts, k, restarts=5, seed=seed)
    return fit_summary(null), fit_summary(alternative)


@pytest.mark.parametrize("k", [1, 2])
def test_the_same_seed_gives_the_same_replicates_however_the_work_is_chunked(k):
    """B = 40 replicates in one chunk, or in 7 uneven chunks run in shuffled order."""
    heads, trials, counts = two_coin_rows(150, 8, seed=4)
    null, alternative = stage_inputs(heads, trials, counts, k)
    kwargs = {"k": k, "null": null, "alternative": alternative, "seed": 21}
    whole = lrt_chunk(heads, trials, counts, indices=range(40), **kwargs)
    order = list(range(40))
    gen = random.Random(k)
    cuts = sorted(gen.sample(range(1, 40), 6))
    chunks = [order[a:b] for a, b in zip([0, *cuts], [*cuts, 40], strict=True)]
    gen.shuffle(chunks)
    pieces = [
        r for chunk in chunks for r in lrt_chunk(heads, trials, counts, indices=chunk, **kwargs)
    ]
    assert sorted(pieces, key=lambda r: r["index"]) == whole
    assert [r["index"] for r in whole] == order
    assert json.loads(json.dumps(whole)) == whole
    assert all(not r["failed"] and r["statistic"] >= 0.0 for r in whole)
    # Another seed draws other data sets.
    other = lrt_chunk(heads, trials, counts, indices=range(40), **{**kwargs, "seed": 22})
    assert other != whole


def test_a_replicate_whose_data_cannot_hold_k_plus_one_coins_fails():
    """A null coin with theta 1 simulates one distinct row: two coins cannot be fitted."""
    null = {"thetas": [1.0], "weights": [1.0], "log_likelihood": 0.0}
    alternative = {"thetas": [0.5, 1.0], "weights": [0.5, 0.5], "log_likelihood": 0.0}
    out = lrt_chunk(
        [3, 4], [4, 4], [5, 5], k=1, null=null, alternative=alternative, seed=0, indices=[0, 1]
    )
    assert out == [
        {"index": 0, "statistic": None, "failed": True},
        {"index": 1, "statistic": None, "failed": True},
    ]


# --- the sequential test -------------------------------------------------------------


def test_two_clear_coins_reject_one_and_the_driver_stops_by_the_rule():
    """400 draws of 10 flips from coins 0.2 and 0.8, B = 19: no simulated single coin
    comes near the observed statistic, so p is its minimum 1/20."""
    heads, trials, counts = two_coin_rows(400, 10, seed=5)
    result = components_test(
        heads, trials, counts, max_components=3, replicates=19, seed=1, restarts=5
    )
    assert list(result) == ["replicates", "tests", "selected"]
    assert result["replicates"] == 19
    first = result["tests"][0]
    assert (first["k"], first["p_value"]) == (1, 1 / 20) and first["statistic"] > 100
    assert json.loads(json.dumps(result)) == result
    # The second test ran, and the selected K follows from its outcome.
    assert [t["k"] for t in result["tests"]] == [1, 2]
    expected = 2 if not is_significant(result["tests"][1]["p_value"]) else 3
    assert result["selected"] == expected


def test_every_test_rejecting_selects_max_components():
    heads, trials, counts = two_coin_rows(400, 10, seed=6)
    result = components_test(
        heads, trials, counts, max_components=2, replicates=19, seed=1, restarts=5
    )
    assert [t["k"] for t in result["tests"]] == [1]
    assert result["selected"] == 2


def test_the_driver_is_the_chunks_put_together():
    heads, trials, counts = two_coin_rows(200, 8, seed=7)
    result = components_test(
        heads, trials, counts, max_components=2, replicates=9, seed=4, restarts=3
    )
    null, alternative = (
        fit_summary(m) for m in null_and_alternative(heads, trials, counts, 1, restarts=3, seed=4)
    )
    chunk = lrt_chunk(
        heads, trials, counts, k=1, null=null, alternative=alternative, seed=4, indices=range(9)
    )
    observed = observed_statistic(null["log_likelihood"], alternative["log_likelihood"])
    assert result["tests"] == [
        {
            "k": 1,
            "statistic": observed,
            "p_value": p_value(observed, [r["statistic"] for r in chunk]),
        }
    ]


@pytest.mark.parametrize(
    ("rows", "overrides", "match"),
    [
        # 4 flips identify at most 2 coins (Teicher: 2K - 1 <= flips).
        (([1, 2, 3], [4, 4, 4], [5, 5, 5]), {"max_components": 3}, "max_components=3"),
        (([1, 2, 3], [6, 6, 6], [5, 5, 5]), {"max_components": 4}, "max_components=4"),
        # Four rows, but only two distinct pairs with draws (one repeated, one empty).
        (([1, 1, 2, 3], [9, 9, 9, 9], [5, 5, 5, 0]), {"max_components": 3}, "2 distinct"),
        (([1, 2, 3], [9, 9, 9], [5, 5, 5]), {"max_components": 1}, "max_components"),
        (([1, 2, 3], [9, 9, 9], [5, 5, 5]), {"replicates": 0}, "replicates"),
        (([1, 2, 3], [9, 9, 9], [5, 5, 5]), {"seed": -3}, "seed"),
        (([1, 12, 3], [9, 9, 9], [5, 5, 5]), {}, "heads"),
    ],
)
def test_components_test_names_the_bad_argument(rows, overrides, match):
    args = {"max_components": 2, "replicates": 5, "seed": 0, **overrides}
    with pytest.raises(ValueError, match=match):
        components_test(*rows, **args)


def test_geissler_families_are_not_one_coin():
    """Geissler's 6,115 Saxon families of 12 children (examples/geissler_counts.json),
    tested up to 3 coins with B = 39: no simulated single coin reaches the observed
    statistic (about 84), so k = 1 is rejected with the smallest p-value B = 39 allows; the
    test goes on to 2 against 3 coins (whose 3-coin refits once overflowed the Newton
    damping, under warnings as errors)."""
    heads, trials, counts = GEISSLER.T
    result = components_test(heads, trials, counts, max_components=3, replicates=39, seed=0)
    first = result["tests"][0]
    assert first["k"] == 1 and first["statistic"] > 50
    assert first["p_value"] == 1 / 40 and is_significant(first["p_value"])
    assert [t["k"] for t in result["tests"]][:2] == [1, 2]
    assert result["selected"] >= 2


# --- size under one coin -------------------------------------------------------------

# 400 data sets of 100 draws of 8 flips from one coin (theta 0.4), each tested k = 1
# against 2 with B = 19 replicates: (B + 1) * 0.05 = 1, so the test rejects when the
# observed statistic beats all 19, an event of probability 0.05 under the null. Larger B
# would not fit in a minute: each replicate is one 1-coin and one 2-coin fit (~4 ms).
SIZE_SETS, SIZE_DRAWS, SIZE_FLIPS, SIZE_B = 400, 100, 8, 19


@pytest.mark.slow
def test_under_one_coin_the_test_rejects_at_its_nominal_size():
    """The rejection rate lies in the 99.9% binomial band around 0.05 for 400 data sets."""
    rejected = 0
    for d in range(SIZE_SETS):
        heads, trials, counts = one_coin_rows(SIZE_DRAWS, SIZE_FLIPS, 0.4, seed=20_000 + d)
        result = components_test(heads, trials, counts, max_components=2, replicates=SIZE_B, seed=d)
        rejected += result["selected"] == 2
    low, high = binom.ppf(0.0005, SIZE_SETS, 0.05), binom.ppf(0.9995, SIZE_SETS, 0.05)
    assert low <= rejected <= high, (rejected / SIZE_SETS, low, high)
