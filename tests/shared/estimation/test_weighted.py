"""Weighted counts, warm starts, and the per-pair posterior table."""

from __future__ import annotations

import numpy as np
import pytest

from shared.estimation import BinomialMixture, select_components
from tests.shared.estimation._reference import distinct_pairs, posterior, total_log_likelihood


def rows(seed: int):
    """[heads, flips, count] rows with varying flips and counts from 1 to 40."""
    rng = np.random.RandomState(seed)
    trials = rng.randint(6, 15, size=25)
    heads = rng.binomial(trials, rng.choice([0.25, 0.7], size=25))
    counts = rng.randint(1, 41, size=25)
    return heads, trials, counts


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("weights", ["learn", "equal"])
def test_weighted_fit_equals_the_expanded_fit(seed, weights):
    heads, trials, counts = rows(seed)
    weighted = BinomialMixture(2, weights=weights, random_state=seed)
    weighted.fit(heads, trials, sample_weight=counts)
    expanded = BinomialMixture(2, weights=weights, random_state=seed)
    expanded.fit(np.repeat(heads, counts), np.repeat(trials, counts))
    assert weighted.log_likelihood_ == pytest.approx(expanded.log_likelihood_, abs=1e-9)
    np.testing.assert_allclose(weighted.thetas_, expanded.thetas_, atol=1e-9)
    np.testing.assert_allclose(weighted.weights_, expanded.weights_, atol=1e-9)
    assert weighted.n_draws_ == counts.sum()
    total = total_log_likelihood(
        np.repeat(heads, counts), np.repeat(trials, counts), weighted.thetas_, weighted.weights_
    )
    assert weighted.log_likelihood_ == pytest.approx(total, rel=1e-12)
    assert weighted.bic(heads, trials, counts) == pytest.approx(
        expanded.bic(np.repeat(heads, counts), np.repeat(trials, counts))
    )


def test_a_billion_draws_as_counts_fit_without_expansion():
    heads = np.arange(13)
    counts = np.array([3, 24, 104, 286, 670, 1033, 1343, 1112, 829, 478, 181, 45, 7]) * 170_000
    model = BinomialMixture(2, random_state=0).fit(heads, 12, sample_weight=counts)
    assert model.n_draws_ == counts.sum() > 10**9
    assert model.converged_
    assert model.pairs_[:, 2].tolist() == counts.tolist()


@pytest.mark.parametrize(
    ("weight", "message"),
    [
        ([1, -2, 3], r"sample_weight\[1\] = -2 is negative"),
        ([1, 2.5, 3], r"sample_weight\[1\] = 2.5 is not an integer count"),
        ([1, 2], "sample_weight must hold one count per draw"),
        ([0, 0, 0], "every sample_weight is 0"),
    ],
)
def test_bad_sample_weight_is_refused(weight, message):
    with pytest.raises(ValueError, match=message):
        BinomialMixture(1).fit([1, 2, 3], 5, sample_weight=weight)


def test_warm_start_with_thetas_and_weights_is_one_run_from_there():
    heads, trials, counts = rows(4)
    full = BinomialMixture(2, random_state=0).fit(heads, trials, counts)
    start = {"thetas": full.thetas_.tolist(), "weights": full.weights_.tolist()}
    warm = BinomialMixture(2, init=start).fit(heads, trials, counts)
    assert len(warm.restarts_) == 1
    assert warm.restarts_[0]["initial_weights"] == pytest.approx(start["weights"])
    assert warm.log_likelihood_ == pytest.approx(full.log_likelihood_, abs=1e-9)
    assert warm.n_iter_ <= 2


def test_warm_start_plus_random_restarts():
    heads, trials, counts = rows(5)
    start = {"thetas": [0.2, 0.8], "weights": [0.9, 0.1]}
    model = BinomialMixture(2, init=start, n_random_init=2, random_state=0)
    model.fit(heads, trials, counts)
    assert len(model.restarts_) == 3
    assert model.restarts_[0]["initial_thetas"] == [0.2, 0.8]
    assert model.restarts_[0]["initial_weights"] == pytest.approx([0.9, 0.1])


@pytest.mark.parametrize(
    ("init", "message"),
    [
        ({"thetas": [0.2, 0.8], "weights": [0.5, 0.6]}, "sum to 1"),
        ({"thetas": [0.2, 0.8], "weights": [1.0]}, "init weights must hold n_components=2"),
        ({"weights": [0.5, 0.5]}, "needs 'thetas'"),
    ],
)
def test_bad_warm_starts_are_refused(init, message):
    with pytest.raises(ValueError, match=message):
        BinomialMixture(2, init=init).fit([1, 5, 9, 2], 10)


def test_posterior_table_has_each_pair_once_with_bayes_rule():
    heads, trials, counts = rows(6)
    heads, trials = np.append(heads, heads[:5]), np.append(trials, trials[:5])
    counts = np.append(counts, np.ones(5, dtype=int))
    model = BinomialMixture(2, random_state=0).fit(heads, trials, counts)
    table = model.posterior_table()
    h, n, c = distinct_pairs(heads, trials, counts)
    order = np.lexsort((h, n))
    assert table.heads.tolist() == h[order].tolist()
    assert table.trials.tolist() == n[order].tolist()
    assert table.counts.tolist() == c[order].tolist()
    expected = posterior(table.heads, table.trials, model.thetas_, model.weights_)
    np.testing.assert_allclose(table.posterior, expected, rtol=1e-9, atol=1e-15)


def test_fewer_distinct_pairs_than_k_names_n_components():
    with pytest.raises(ValueError, match="n_components=3 needs at least 3 distinct"):
        BinomialMixture(3).fit([4, 4, 6, 6, 4], 10)


def test_auto_stops_at_the_number_of_distinct_pairs():
    best, bics = select_components([4, 4, 6, 6, 4], 10, max_components=4, random_state=0)
    assert sorted(bics) == [1, 2] and best in (1, 2)


def test_select_components_with_counts_matches_expanded_draws():
    heads, trials, counts = rows(7)
    a = select_components(heads, trials, 3, sample_weight=counts, random_state=0)
    b = select_components(np.repeat(heads, counts), np.repeat(trials, counts), 3, random_state=0)
    assert a[0] == b[0]
    for k in a[1]:
        assert a[1][k] == pytest.approx(b[1][k], abs=1e-6)
