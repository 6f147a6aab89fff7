"""Tarone's overdispersion test, ICL, degenerate components and the K cap for "auto"."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from shared.estimation import (
    BinomialMixture,
    component_limit,
    degenerate_components,
    icl,
    select_components,
    tarone_test,
)
from tests.shared.estimation._reference import posterior, total_log_likelihood

GEISSLER = np.array([3, 24, 104, 286, 670, 1033, 1343, 1112, 829, 478, 181, 45, 7])
GEISSLER_HEADS = np.repeat(np.arange(13), GEISSLER)


def tarone_by_hand(heads, trials):
    """Tarone (1979), eq. for Z, with plain Python sums over the draws."""
    p = sum(heads) / sum(trials)
    s = sum((x - n * p) ** 2 for x, n in zip(heads, trials, strict=True)) / (p * (1 - p))
    z = (s - sum(trials)) / math.sqrt(2 * sum(n * (n - 1) for n in trials))
    return z, norm.sf(z)


def test_tarone_matches_its_formula_with_varying_flips():
    rng = np.random.RandomState(0)
    trials = rng.randint(3, 40, size=200)
    heads = rng.binomial(trials, rng.beta(4, 6, size=200))
    z, p = tarone_by_hand(heads.tolist(), trials.tolist())
    result = tarone_test(heads, trials)
    assert result.statistic == pytest.approx(z, rel=1e-10)
    assert result.p_value == pytest.approx(p, rel=1e-8)


def test_tarone_with_counts_matches_expanded_draws():
    rng = np.random.RandomState(1)
    trials = rng.randint(3, 20, size=30)
    heads = rng.binomial(trials, 0.4)
    counts = rng.randint(1, 9, size=30)
    z, _ = tarone_by_hand(np.repeat(heads, counts).tolist(), np.repeat(trials, counts).tolist())
    assert tarone_test(heads, trials, sample_weight=counts).statistic == pytest.approx(z)


def test_geissler_is_overdispersed_at_one_percent():
    result = tarone_test(np.arange(13), 12, sample_weight=GEISSLER)
    p = (np.arange(13) @ GEISSLER) / (12 * GEISSLER.sum())
    mean = 12 * p
    variance = ((np.arange(13) - mean) ** 2 @ GEISSLER) / GEISSLER.sum()
    assert round(variance, 2) == 3.49 and round(12 * p * (1 - p), 2) == 3.00
    assert result.dispersion == pytest.approx(variance / (12 * p * (1 - p)))
    assert result.overdispersed and result.p_value < 0.01 and result.level == 0.01


def test_binomial_data_is_not_flagged():
    # Under a single binomial the test has size 1%: these fixed-seed sets are not flagged.
    flagged = 0
    for seed in range(20):
        rng = np.random.RandomState(seed)
        trials = rng.randint(5, 30, size=500)
        flagged += tarone_test(rng.binomial(trials, 0.3), trials).overdispersed
    assert flagged <= 1


def test_tarone_is_undefined_without_variation():
    result = tarone_test([0, 0, 0], 5)
    assert math.isnan(result.statistic) and not result.overdispersed


def test_icl_is_bic_plus_twice_the_classification_entropy():
    model = BinomialMixture(2, random_state=0).fit(GEISSLER_HEADS, 12)
    tau = posterior(GEISSLER_HEADS, 12, model.thetas_, model.weights_)
    entropy = -np.sum(tau * np.log(tau))
    total = total_log_likelihood(GEISSLER_HEADS, 12, model.thetas_, model.weights_)
    bic = -2 * total + 3 * math.log(GEISSLER.sum())
    assert model.bic_ == pytest.approx(bic, rel=1e-10)
    assert model.icl_ == pytest.approx(bic + 2 * entropy, rel=1e-10)
    assert model.icl(GEISSLER_HEADS, 12) == pytest.approx(bic + 2 * entropy, rel=1e-10)
    assert icl(bic, tau, np.ones(tau.shape[0])) == pytest.approx(bic + 2 * entropy, rel=1e-10)


def test_select_components_reports_icl_beside_bic():
    best, bics, icls = select_components(
        np.arange(13), 12, 3, sample_weight=GEISSLER, random_state=0, return_icl=True
    )
    assert sorted(bics) == sorted(icls) == [1, 2, 3]
    assert best == min(bics, key=bics.get)
    assert icls[1] == pytest.approx(bics[1])  # one coin: no classification entropy
    assert all(icls[k] > bics[k] for k in (2, 3))


def test_degenerate_components_flags_small_weights_and_close_thetas():
    found = degenerate_components([0.2, 0.2005, 0.7], [0.5, 0.4999, 0.0001], n_draws=1000)
    assert found.small_weights == [2]
    assert found.close_pairs == [(0, 1)]
    assert found.degenerate
    clean = degenerate_components([0.2, 0.5, 0.7], [0.3, 0.3, 0.4], n_draws=1000)
    assert not clean.degenerate


@pytest.mark.parametrize(
    ("max_components", "n_pairs", "max_trials", "expected"),
    [(4, 10, 12, 4), (4, 2, 12, 2), (4, 10, 4, 2), (1, 10, 12, 1), (6, 7, 11, 6)],
)
def test_component_limit_is_the_smallest_cap(max_components, n_pairs, max_trials, expected):
    got = component_limit(max_components, n_pairs=n_pairs, max_trials=max_trials)
    assert got == expected
