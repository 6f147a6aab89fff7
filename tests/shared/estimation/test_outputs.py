"""Fitted outputs against independent formulas: posteriors, scores, criteria, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from shared.estimation import BinomialMixture, select_components
from tests.shared.estimation._reference import (
    mixture_log_pmf,
    numerical_standard_errors,
    posterior,
    total_log_likelihood,
)


def simulate(thetas, weights, n_draws, trials, seed):
    rng = np.random.RandomState(seed)
    coin = rng.choice(len(thetas), size=n_draws, p=weights)
    return rng.binomial(trials, np.asarray(thetas)[coin]), np.broadcast_to(trials, n_draws)


@pytest.fixture(scope="module")
def fitted():
    heads, trials = simulate([0.2, 0.55, 0.85], [0.3, 0.3, 0.4], 400, 12, seed=3)
    return BinomialMixture(3, random_state=0).fit(heads, trials), heads, trials


def test_predict_proba_is_bayes_rule(fitted):
    model, heads, trials = fitted
    proba = model.predict_proba(heads, trials)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    expected = posterior(heads, trials, model.thetas_, model.weights_)
    np.testing.assert_allclose(proba, expected, rtol=1e-9, atol=1e-15)
    np.testing.assert_array_equal(model.predict(heads, trials), expected.argmax(axis=1))


def test_predict_proba_with_new_varying_flips(fitted):
    model, _, _ = fitted
    heads, trials = np.array([0, 3, 9, 20]), np.array([1, 5, 12, 25])
    expected = posterior(heads, trials, model.thetas_, model.weights_)
    np.testing.assert_allclose(model.predict_proba(heads, trials), expected, rtol=1e-9)


def test_log_likelihood_score_bic_aic_match_scipy(fitted):
    model, heads, trials = fitted
    total = total_log_likelihood(heads, trials, model.thetas_, model.weights_)
    assert model.log_likelihood_ == pytest.approx(total, rel=1e-12)
    assert model.score(heads, trials) == pytest.approx(total / heads.size, rel=1e-12)
    n_params = 3 + 2  # three thetas, two free weights
    assert model.bic(heads, trials) == pytest.approx(-2 * total + n_params * math.log(400))
    assert model.aic(heads, trials) == pytest.approx(-2 * total + 2 * n_params)


def test_equal_weights_count_only_thetas_in_bic():
    heads, trials = simulate([0.3, 0.7], [0.5, 0.5], 200, 10, seed=4)
    model = BinomialMixture(2, weights="equal", random_state=0).fit(heads, trials)
    total = total_log_likelihood(heads, trials, model.thetas_, [0.5, 0.5])
    assert model.bic(heads, trials) == pytest.approx(-2 * total + 2 * math.log(200))


@pytest.mark.parametrize(
    ("thetas", "weights", "mode"),
    [
        ([0.3, 0.7], [0.4, 0.6], "learn"),
        ([0.3, 0.7], [0.5, 0.5], "equal"),
        ([0.15, 0.5, 0.8], [0.3, 0.3, 0.4], "learn"),
        ([0.15, 0.5, 0.8], [1 / 3, 1 / 3, 1 / 3], "equal"),
    ],
)
def test_standard_errors_match_a_finite_difference_hessian(thetas, weights, mode):
    heads, trials = simulate(thetas, weights, 300, 12, seed=len(thetas))
    model = BinomialMixture(len(thetas), weights=mode, random_state=0, tol=1e-12)
    model.fit(heads, trials)
    expected = numerical_standard_errors(
        heads, trials, model.thetas_, model.weights_, learn=mode == "learn"
    )
    np.testing.assert_allclose(model.standard_errors_, expected, rtol=1e-4)


def test_boundary_theta_has_nan_error_and_the_others_are_right():
    # Ten all-tails draws and forty from a fair-ish coin: the MLE puts a coin on 0.
    heads = np.array([0] * 10 + [4, 5, 6, 5, 3, 7, 5, 4, 6, 5] * 4)
    model = BinomialMixture(2, random_state=0, tol=1e-12).fit(heads, 10)
    assert model.thetas_[0] <= 1e-9
    assert np.isnan(model.standard_errors_[0])
    assert np.isfinite(model.standard_errors_[1])
    # Moving the low coin off the boundary can only lower the likelihood.
    for theta in (1e-6, 1e-3, 0.02):
        moved = total_log_likelihood(heads, 10, [theta, model.thetas_[1]], model.weights_)
        assert moved < model.log_likelihood_
    expected = numerical_standard_errors(
        heads, 10, model.thetas_, model.weights_, learn=True, fixed=(0,)
    )
    np.testing.assert_allclose(model.standard_errors_[1], expected[1], rtol=1e-4)


def test_a_million_flips_per_draw_gives_finite_results():
    rng = np.random.RandomState(5)
    truth = np.array([0.3, 0.7])
    coin = rng.randint(2, size=40)
    heads = rng.binomial(10**6, truth[coin])
    model = BinomialMixture(2, random_state=0).fit(heads, 10**6)
    assert np.all(np.isfinite(model.thetas_)) and np.isfinite(model.log_likelihood_)
    assert np.all(np.isfinite(model.standard_errors_))
    assert np.all(np.abs(model.thetas_ - truth) < 5 * model.standard_errors_ + 1e-3)
    total = total_log_likelihood(heads, 10**6, model.thetas_, model.weights_)
    assert model.log_likelihood_ == pytest.approx(total, rel=1e-9)
    proba = model.predict_proba(heads, 10**6)
    np.testing.assert_array_equal(proba.argmax(axis=1), coin if truth[0] < truth[1] else 1 - coin)


def test_thetas_near_zero_and_one_give_finite_results():
    rng = np.random.RandomState(6)
    heads = np.concatenate((rng.binomial(10**6, 1e-7, 20), rng.binomial(10**6, 1 - 1e-7, 20)))
    model = BinomialMixture(2, random_state=0).fit(heads, 10**6)
    assert model.thetas_[0] < 1e-6 and model.thetas_[1] > 1 - 1e-6
    assert np.isfinite(model.log_likelihood_)
    assert np.all(np.isfinite(model.predict_proba(heads, 10**6)))
    assert np.isfinite(model.score(heads, 10**6))


def test_all_tails_and_all_heads_put_coins_on_the_boundary():
    heads = np.array([0] * 15 + [10] * 5)
    model = BinomialMixture(2, random_state=0).fit(heads, 10)
    assert model.thetas_[0] == pytest.approx(0, abs=1e-9)
    assert model.thetas_[1] == pytest.approx(1, abs=1e-9)
    assert model.weights_ == pytest.approx([0.75, 0.25])
    assert np.isnan(model.standard_errors_).all()
    assert model.log_likelihood_ == pytest.approx(15 * math.log(0.75) + 5 * math.log(0.25))


def test_select_components_picks_the_true_k_and_reports_bic():
    heads, trials = simulate([0.1, 0.5, 0.9], [0.3, 0.4, 0.3], 600, 10, seed=7)
    best, bics = select_components(heads, trials, 4, random_state=0, max_iter=50_000)
    assert best == 3
    assert sorted(bics) == [1, 2, 3, 4]
    for k, value in bics.items():
        model = BinomialMixture(k, random_state=0, max_iter=50_000).fit(heads, trials)
        total = mixture_log_pmf(heads, trials, model.thetas_, model.weights_).sum()
        assert value == pytest.approx(-2 * total + (2 * k - 1) * math.log(600))


def test_select_components_stops_at_the_identifiable_k():
    heads = np.array([0, 1, 2, 3, 4, 4, 0, 2])
    model = BinomialMixture(weights="equal", random_state=0)
    best, bics = model.select_components(heads, 4, max_components=5)
    assert sorted(bics) == [1, 2] and best in bics
    assert not hasattr(model, "thetas_")


def test_fitted_results_serialise_to_json(fitted):
    model, _, _ = fitted
    payload = {
        "thetas": model.thetas_.tolist(),
        "weights": model.weights_.tolist(),
        "standard_errors": model.standard_errors_.tolist(),
        "restarts": model.restarts_,
        "log_likelihood": model.log_likelihood_,
        "converged": model.converged_,
        "n_iter": model.n_iter_,
    }
    assert json.loads(json.dumps(payload))["restarts"] == model.restarts_
