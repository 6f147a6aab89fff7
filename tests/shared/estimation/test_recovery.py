"""Recovery of known coins from simulated draws, within a tolerance from standard_errors_."""

from __future__ import annotations

import numpy as np
import pytest

from shared.estimation import BinomialMixture

# |estimate - truth| <= Z standard errors; for 2-4 coins in 6 scenarios a false alarm
# at this Z has probability well under 1e-3 if the errors are right.
Z = 4.5

SCENARIOS = {
    "two coins": ([0.3, 0.7], [0.4, 0.6], 2000, 10, "learn"),
    "three coins": ([0.1, 0.5, 0.9], [0.2, 0.5, 0.3], 3000, 20, "learn"),
    "four coins": ([0.1, 0.35, 0.6, 0.9], [0.25, 0.25, 0.25, 0.25], 6000, 15, "learn"),
    "equal weights": ([0.2, 0.6], [0.5, 0.5], 500, 30, "equal"),
    "varying flips": ([0.25, 0.65], [0.7, 0.3], 1500, (5, 50), "learn"),
    "lopsided": ([0.05, 0.5], [0.9, 0.1], 4000, 12, "learn"),
}


def simulate(thetas, weights, n_draws, flips, seed):
    rng = np.random.RandomState(seed)
    trials = rng.randint(flips[0], flips[1] + 1, n_draws) if isinstance(flips, tuple) else flips
    coin = rng.choice(len(thetas), size=n_draws, p=weights)
    return rng.binomial(trials, np.asarray(thetas)[coin]), trials


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_recovers_the_coins_within_their_standard_errors(name):
    thetas, weights, n_draws, flips, mode = SCENARIOS[name]
    heads, trials = simulate(thetas, weights, n_draws, flips, seed=len(name))
    model = BinomialMixture(len(thetas), weights=mode, random_state=1).fit(heads, trials)
    se = model.standard_errors_
    assert np.all(np.isfinite(se)) and np.all(se > 0)
    # The errors must be small enough for the check to mean something.
    assert np.all(se < 0.05)
    assert np.all(np.abs(model.thetas_ - thetas) <= Z * se), (model.thetas_, se)
    assert np.abs(model.weights_ - weights).max() < 0.1


def test_standard_errors_match_the_spread_over_repeated_experiments():
    """Over 150 simulated data sets, the SD of the estimates is close to the mean SE."""
    thetas, weights = [0.3, 0.7], [0.4, 0.6]
    estimates, errors = [], []
    for seed in range(150):
        heads, trials = simulate(thetas, weights, 300, 10, seed=1000 + seed)
        model = BinomialMixture(2, n_init=3, random_state=seed).fit(heads, trials)
        estimates.append(model.thetas_)
        errors.append(model.standard_errors_)
    spread = np.std(estimates, axis=0, ddof=1)
    typical = np.mean(errors, axis=0)
    # With 150 replicates the SD itself is known to about +-6% (1 SD); allow 25%.
    np.testing.assert_allclose(spread, typical, rtol=0.25)
    assert np.abs(np.mean(estimates, axis=0) - thetas).max() < 3 * typical.max() / np.sqrt(150)
