"""Properties checked with hypothesis: order of draws, repeatability, monotone EM."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning

from shared.estimation import BinomialMixture, max_identifiable_components

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw):
    """Draws with fixed or varying flips, and an identifiable K of at most 3."""
    n_draws = draw(st.integers(2, 40))
    if draw(st.booleans()):
        trials = [draw(st.integers(1, 12))] * n_draws
    else:
        trials = draw(st.lists(st.integers(1, 12), min_size=n_draws, max_size=n_draws))
    heads = [draw(st.integers(0, n)) for n in trials]
    n_pairs = len(set(zip(heads, trials, strict=True)))
    k = draw(st.integers(1, min(3, n_pairs, max_identifiable_components(max(trials)))))
    weights = draw(st.sampled_from(["learn", "equal"]))
    return np.array(heads), np.array(trials), k, weights


def fit(heads, trials, k, weights, seed=0):
    return BinomialMixture(k, weights=weights, random_state=seed, max_iter=100_000).fit(
        heads, trials
    )


@FAST
@given(problems(), st.randoms(use_true_random=False))
def test_permuting_the_draws_changes_nothing(problem, random):
    heads, trials, k, weights = problem
    order = list(range(heads.size))
    random.shuffle(order)
    a = fit(heads, trials, k, weights)
    b = fit(heads[order], trials[order], k, weights)
    np.testing.assert_allclose(a.thetas_, b.thetas_, atol=1e-9, rtol=0)
    np.testing.assert_allclose(a.weights_, b.weights_, atol=1e-9, rtol=0)
    assert a.log_likelihood_ == pytest.approx(b.log_likelihood_, abs=1e-9)
    np.testing.assert_allclose(
        a.predict_proba(heads, trials)[order],
        b.predict_proba(heads[order], trials[order]),
        atol=1e-9,
    )


@FAST
@given(problems(), st.integers(0, 2**32 - 1))
def test_random_state_makes_fits_identical(problem, seed):
    heads, trials, k, weights = problem
    a = fit(heads, trials, k, weights, seed)
    b = fit(heads, trials, k, weights, seed)
    np.testing.assert_array_equal(a.thetas_, b.thetas_)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    np.testing.assert_array_equal(a.log_likelihood_history_, b.log_likelihood_history_)
    assert a.restarts_ == b.restarts_


@FAST
@given(problems(), st.sampled_from(["kmeans", "random"]), st.integers(0, 1000))
def test_log_likelihood_never_decreases(problem, init, seed):
    heads, trials, k, weights = problem
    model = BinomialMixture(k, weights=weights, init=init, tol=0, max_iter=60, random_state=seed)
    with pytest.warns(ConvergenceWarning):
        model.fit(heads, trials)
    history = model.log_likelihood_history_
    assert history.size == 60
    steps = np.diff(history)
    # Allow only rounding noise: a few ulps of the log-likelihood.
    assert steps.min() >= -1e-12 * max(1.0, abs(history[-1]))


@FAST
@given(problems())
def test_restart_records_are_consistent(problem):
    heads, trials, k, weights = problem
    model = fit(heads, trials, k, weights)
    finals = np.array([r["thetas"] for r in model.restarts_])
    assert len(model.restarts_) == 10
    assert all(np.all(np.diff(row) >= 0) for row in finals)
    np.testing.assert_allclose(model.averaged_thetas_, finals.mean(axis=0))
    np.testing.assert_allclose(model.averaged_std_, finals.std(axis=0), atol=1e-15)
    best = max(r["log_likelihood"] for r in model.restarts_)
    assert model.log_likelihood_ == best
    assert np.all(np.diff(model.thetas_) >= 0)
    assert model.weights_.sum() == pytest.approx(1.0)
