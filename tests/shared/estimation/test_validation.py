"""Every error case raises a ValueError whose message names the problem."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError

from shared.errors import InvalidDrawError
from shared.estimation import BinomialMixture, fit_gmm_proportions, max_identifiable_components


def fit_em(heads, trials, k=2):
    return BinomialMixture(k, random_state=0).fit(heads, trials)


def fit_gmm(heads, trials, k=2):
    return fit_gmm_proportions(heads, trials, k, random_state=0)


FITTERS = [fit_em, fit_gmm]

BAD_DATA = [
    ([], 10, "no draws"),
    ([3, -1, 2], 10, r"heads\[1\] = -1 is negative"),
    ([3, 1, 2], [10, 0, 10], r"trials\[1\] = 0: a draw needs at least 1 flip"),
    ([3, 1, 2], -4, r"trials\[0\] = -4: a draw needs at least 1 flip"),
    ([3, 11, 2], 10, r"heads\[1\] = 11 exceeds trials\[1\] = 10"),
    ([3, 3.5, 2], 10, r"heads\[1\] = 3.5 is not an integer count"),
    ([3, 1, 2], [10, 10.5, 10], r"trials\[1\] = 10.5 is not an integer count"),
    ([3, 1, 2], 10.5, r"trials = 10.5 is not an integer count"),
    ([3, np.nan, 2], 10, r"heads\[1\] = nan is not an integer count"),
    ([3, 1, 2], [10, 10], r"one int or an array with one entry per draw"),
    ([[3, 1]], 10, "1-D array"),
    (["a", "b"], 10, "integer counts"),
]


@pytest.mark.parametrize("fit", FITTERS)
@pytest.mark.parametrize(("heads", "trials", "message"), BAD_DATA)
def test_bad_data_is_refused(fit, heads, trials, message):
    with pytest.raises(ValueError, match=message):
        fit(heads, trials)


@pytest.mark.parametrize("fit", FITTERS)
def test_integral_floats_are_accepted_as_ints(fit):
    heads = [3, 7, 2, 9, 8, 1]
    as_ints = fit(heads, 10)
    as_floats = fit([float(h) for h in heads], 10.0)
    if isinstance(as_ints, dict):
        np.testing.assert_array_equal(as_ints["means"], as_floats["means"])
    else:
        np.testing.assert_array_equal(as_ints.thetas_, as_floats.thetas_)


@pytest.mark.parametrize("fit", FITTERS)
def test_n_components_below_one_is_refused(fit):
    with pytest.raises(ValueError, match="n_components must be at least 1, got 0"):
        fit([1, 2, 3], 10, k=0)


@pytest.mark.parametrize("fit", FITTERS)
def test_unidentifiable_k_is_refused_with_the_reason(fit):
    expected = (
        "n_components=3 cannot be identified from draws of at most 4 flips: a mixture of "
        "K binomials needs at least 2K-1 flips per draw (Teicher 1963)"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        fit([1, 2, 3, 4], 4, k=3)
    with pytest.raises(ValueError, match="at most 1 flip:"):
        fit([0, 1, 1], 1, k=2)


@pytest.mark.parametrize(("flips", "k"), [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (10, 5)])
def test_max_identifiable_components_follows_teicher(flips, k):
    assert max_identifiable_components(flips) == k
    # 2K - 1 <= n holds for K and fails for K + 1.
    assert 2 * k - 1 <= flips < 2 * (k + 1) - 1


def test_largest_identifiable_k_is_accepted_with_varying_flips():
    # The limit comes from the largest number of flips in any draw.
    model = fit_em([0, 1, 4, 5, 0, 5, 1], [1, 2, 5, 5, 5, 5, 3], k=3)
    assert model.thetas_.size == 3
    with pytest.raises(ValueError, match="n_components=4 cannot be identified"):
        fit_em([0, 1, 4, 5, 0, 5, 1], [1, 2, 5, 5, 5, 5, 3], k=4)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"weights": "fixed"}, "weights must be 'learn' or 'equal'"),
        ({"init": "spread"}, "init must be 'kmeans', 'random' or an array of 2 thetas"),
        ({"init": [0.2, 0.5, 0.9]}, "init must hold n_components=2 thetas"),
        ({"init": [0.2, 1.5]}, r"initial thetas must lie in \[0, 1\]"),
        ({"n_init": 0}, "n_init must be an integer >= 1"),
        ({"n_init": 2.5}, "n_init must be an integer"),
        ({"max_iter": 0}, "max_iter must be an integer >= 1"),
        ({"tol": -1.0}, "tol must be a non-negative number"),
        ({"n_components": 2.5}, "n_components must be an integer"),
        ({"n_components": True}, "n_components must be an integer"),
    ],
)
def test_bad_settings_are_refused_in_fit(params, message):
    model = BinomialMixture(**params)  # the constructor only stores them
    with pytest.raises(ValueError, match=message):
        model.fit([1, 5, 9, 2], 10)


def test_fit_flips_parses_and_names_the_bad_draw():
    model = BinomialMixture(2, random_state=0).fit_flips(["HTTHh", "tttTH", "HHHHT", "hhhth"])
    direct = BinomialMixture(2, random_state=0).fit([3, 1, 4, 4], 5)
    np.testing.assert_array_equal(model.thetas_, direct.thetas_)
    with pytest.raises(InvalidDrawError, match=r"draw 1 has 'X' at position 2") as info:
        BinomialMixture(2).fit_flips(["HTTHH", "HTXHH"])
    assert info.value.index == 1


def test_fit_flips_with_no_draws_is_refused():
    with pytest.raises(ValueError, match="no draws"):
        BinomialMixture(1).fit_flips([])


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score", "bic", "aic"])
def test_methods_need_a_fitted_model(method):
    with pytest.raises(NotFittedError):
        getattr(BinomialMixture(), method)([1, 2], 10)


@st.composite
def corrupted(draw):
    """Valid data with one entry broken in one of the ways above; returns data and message."""
    n = draw(st.integers(1, 30))
    trials = draw(st.lists(st.integers(1, 20), min_size=n, max_size=n))
    heads = [draw(st.integers(0, t)) for t in trials]
    i = draw(st.integers(0, n - 1))
    kind = draw(st.sampled_from(["negative", "too_many", "no_flips", "fraction"]))
    heads_f = [float(h) for h in heads]
    trials_f = [float(t) for t in trials]
    if kind == "negative":
        heads_f[i] = -float(draw(st.integers(1, 5)))
        return heads_f, trials_f, rf"heads\[{i}\] = -\d+ is negative"
    if kind == "too_many":
        heads_f[i] = trials_f[i] + draw(st.integers(1, 5))
        return heads_f, trials_f, rf"heads\[{i}\] = \d+ exceeds trials\[{i}\] = {trials[i]}"
    if kind == "no_flips":
        heads_f[i], trials_f[i] = 0.0, -float(draw(st.integers(0, 3)))
        return heads_f, trials_f, rf"trials\[{i}\] = -?\d+: a draw needs at least 1 flip"
    heads_f[i] += 0.25
    return heads_f, trials_f, rf"heads\[{i}\] = [\d.]+ is not an integer count"


@settings(max_examples=60, deadline=None)
@given(corrupted())
def test_any_single_bad_entry_is_named(case):
    heads, trials, message = case
    with pytest.raises(ValueError, match=message):
        BinomialMixture(1).fit(heads, trials)
