"""With the defaults, fits reach the maximum likelihood and converged_ certifies it.

The maxima come from tests._reference.reference_maximum: many-start EM written out in the
test, polished with scipy's BFGS; never from the code under test.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from shared.estimation import BinomialMixture
from tests.shared.estimation._reference import distinct_pairs, reference_maximum

# Geissler's Saxony families: 6,115 families of 12 children with 0 .. 12 boys.
GEISSLER = np.array([3, 24, 104, 286, 670, 1033, 1343, 1112, 829, 478, 181, 45, 7])
GEISSLER_HEADS = np.repeat(np.arange(13), GEISSLER)
GAP = 1e-6


@functools.cache
def geissler_maximum(k: int):
    return reference_maximum(np.arange(13), np.full(13, 12), GEISSLER.astype(float), k)


def overlapping(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three coins 0.1-0.2 apart, 300-2,000 draws of 5-30 flips each."""
    rng = np.random.RandomState(seed)
    n_draws = rng.randint(300, 2001)
    centre = rng.uniform(0.3, 0.7)
    gap = rng.uniform(0.1, 0.2)
    thetas = np.clip(centre + gap * np.array([-1.0, 0.0, 1.0]), 0.02, 0.98)
    coin = rng.choice(3, size=n_draws, p=rng.dirichlet(np.full(3, 4.0)))
    trials = rng.randint(5, 31, size=n_draws)
    return rng.binomial(trials, thetas[coin]), trials


@functools.cache
def overlapping_maximum(seed: int):
    return reference_maximum(*distinct_pairs(*overlapping(seed)), 3, seed=seed)


@pytest.mark.parametrize("k", [2, 3])
def test_geissler_reaches_the_maximum_with_the_defaults(k):
    best, thetas, weights = geissler_maximum(k)
    # filterwarnings=error: a ConvergenceWarning would fail this test.
    model = BinomialMixture(k, random_state=0).fit(GEISSLER_HEADS, 12)
    assert model.converged_ is True
    assert model.log_likelihood_ >= best - GAP
    np.testing.assert_allclose(model.thetas_, thetas, atol=1e-4)
    np.testing.assert_allclose(model.weights_, weights, atol=1e-4)


def test_geissler_three_coins_put_the_small_coin_at_0_225():
    # The symptom: stopped early, the small coin sat at 0.218.
    model = BinomialMixture(3, random_state=0).fit(GEISSLER_HEADS, 12)
    assert model.thetas_[0] == pytest.approx(geissler_maximum(3)[1][0], abs=1e-4)
    assert round(model.thetas_[0], 3) == 0.225


@pytest.mark.parametrize("seed", range(11))
def test_overlapping_three_coins_reach_the_maximum(seed):
    heads, trials = overlapping(seed)
    best = overlapping_maximum(seed)[0]
    model = BinomialMixture(3, random_state=seed).fit(heads, trials)
    assert model.converged_ is True
    assert model.log_likelihood_ >= best - GAP


def test_max_iter_stop_is_not_converged_and_warns():
    model = BinomialMixture(3, random_state=0, max_iter=3)
    with pytest.warns(ConvergenceWarning, match="did not converge in max_iter=3"):
        model.fit(GEISSLER_HEADS, 12)
    assert model.converged_ is False
    assert model.n_iter_ == 3


def test_converged_means_a_small_gradient_at_the_end():
    model = BinomialMixture(2, random_state=0).fit(GEISSLER_HEADS, 12)
    assert model.gradient_ <= model.gtol
    # Independently: the score of the log-likelihood in (logit theta, log weight) is ~0.
    from tests.shared.estimation._reference import total_log_likelihood

    def ll(x):
        th = 1 / (1 + np.exp(-x[:2]))
        w = np.exp(x[2:]) / np.exp(x[2:]).sum()
        return total_log_likelihood(GEISSLER_HEADS, 12, th, w)

    x0 = np.concatenate((np.log(model.thetas_ / (1 - model.thetas_)), np.log(model.weights_)))
    step = 1e-5
    grad = [(ll(x0 + step * e) - ll(x0 - step * e)) / (2 * step) for e in np.eye(4)]
    assert np.abs(grad).max() < 1e-3


def test_squarem_needs_far_fewer_iterations_than_plain_em():
    fast = BinomialMixture(2, random_state=0).fit(GEISSLER_HEADS, 12)
    with pytest.warns(ConvergenceWarning):
        slow = BinomialMixture(2, random_state=0, acceleration="none").fit(GEISSLER_HEADS, 12)
    assert fast.converged_ and not slow.converged_
    assert fast.log_likelihood_ > slow.log_likelihood_
    assert fast.n_em_steps_ < 1000


def test_trajectory_is_monotone_and_ends_at_the_fit():
    model = BinomialMixture(3, random_state=0).fit(GEISSLER_HEADS, 12)
    traj = model.trajectory_
    assert traj["log_likelihood"].shape == (model.n_iter_,)
    assert traj["thetas"].shape == (model.n_iter_, 3)
    steps = np.diff(traj["log_likelihood"])
    assert steps.min() >= -1e-9
    # The last recorded point, up to the final Newton polish, is the fit.
    np.testing.assert_allclose(traj["thetas"][-1], model.thetas_, atol=1e-6)
    assert traj["log_likelihood"][-1] == pytest.approx(model.log_likelihood_, abs=1e-6)
    np.testing.assert_array_equal(traj["log_likelihood"], model.log_likelihood_history_)


def test_restart_summary_counts_restarts_at_the_best():
    model = BinomialMixture(3, random_state=0).fit(GEISSLER_HEADS, 12)
    lls = np.array([r["log_likelihood"] for r in model.restarts_])
    summary = model.restart_summary_
    assert summary["n_restarts"] == len(lls) == 10
    assert summary["n_at_best"] == int(np.sum(lls >= lls.max() - 1e-6))
    assert summary["spread"] == pytest.approx(lls.max() - lls.min())
    assert summary["best"] == lls.max()
