"""The E-step, M-step and count aggregation against independent computations."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy.stats import binom

from shared.estimation._counts import tally
from shared.estimation._em import EPS, _newton_try, _start, e_step, m_step, run_em


def make_table(seed: int, n_draws: int = 40, vary: bool = True):
    rng = np.random.RandomState(seed)
    trials = rng.randint(1, 15, size=n_draws) if vary else np.full(n_draws, 12)
    heads = rng.binomial(trials, rng.uniform(0.1, 0.9, size=n_draws))
    return heads, trials, tally(heads, trials)


@pytest.mark.parametrize("vary", [False, True])
def test_tally_matches_a_counter(vary):
    heads, trials, table = make_table(1, n_draws=500, vary=vary)
    expected = Counter(zip(heads.tolist(), trials.tolist(), strict=True))
    pairs = zip(table.heads.tolist(), table.trials.tolist(), strict=True)
    got = dict(zip(pairs, table.counts.tolist(), strict=True))
    assert got == expected
    assert table.n_draws == 500
    expected_coef = sum(c * math.log(math.comb(n, h)) for (h, n), c in expected.items())
    assert table.total_log_coef == pytest.approx(expected_coef, rel=1e-12)


def test_tally_of_a_million_draws_of_ten_flips_has_eleven_pairs():
    heads = np.random.RandomState(0).binomial(10, 0.5, size=10**6)
    table = tally(heads, np.full(heads.size, 10))
    assert table.heads.tolist() == list(range(11))
    assert table.counts.tolist() == np.bincount(heads, minlength=11).tolist()


def test_tally_with_huge_flip_counts_uses_the_fallback():
    trials = np.array([10**7, 10**7, 3, 10**7 + 1])
    heads = np.array([5, 5, 3, 0])
    table = tally(heads, trials)
    got = list(zip(table.heads.tolist(), table.trials.tolist(), table.counts.tolist(), strict=True))
    assert sorted(got) == sorted([(5, 10**7, 2), (3, 3, 1), (0, 10**7 + 1, 1)])


def test_e_step_matches_bayes_rule_with_scipy():
    _, _, table = make_table(2)
    rng = np.random.RandomState(3)
    thetas = rng.uniform(0.05, 0.95, size=(4, 3))
    weights = rng.dirichlet(np.ones(3), size=4)
    resp, ll = e_step(table, thetas, np.log(weights))
    assert resp.shape == (4, 3, table.heads.size)
    for r in range(4):
        pmf = binom.pmf(table.heads[:, None], table.trials[:, None], thetas[r][None, :])
        joint = pmf * weights[r]
        np.testing.assert_allclose(resp[r].T, joint / joint.sum(axis=1, keepdims=True), rtol=1e-10)
        expected_ll = float(table.counts @ np.log(joint.sum(axis=1)))
        assert ll[r] == pytest.approx(expected_ll, rel=1e-12)


def test_m_step_is_the_weighted_heads_fraction():
    _, _, table = make_table(4)
    rng = np.random.RandomState(5)
    resp = rng.dirichlet(np.ones(2), size=(3, table.heads.size)).transpose(0, 2, 1)  # (R,K,M)
    old = np.full((3, 2), 0.5)
    thetas, weights = m_step(table, resp, old, np.full((3, 2), 0.5), learn=True)
    for r in range(3):
        for k in range(2):
            wk = resp[r, k] * table.counts
            expected = (wk * table.heads).sum() / (wk * table.trials).sum()
            assert thetas[r, k] == pytest.approx(expected, rel=1e-12)
            assert weights[r, k] == pytest.approx(wk.sum() / table.counts.sum(), rel=1e-12)
    _, fixed = m_step(table, resp, old, np.full((3, 2), 0.5), learn=False)
    assert fixed.tolist() == [[0.5, 0.5]] * 3


def test_m_step_keeps_thetas_inside_the_open_interval():
    heads = np.array([0, 0, 10, 10])
    table = tally(heads, np.full(4, 10))
    resp = np.zeros((1, 2, table.heads.size))
    resp[0, 0, table.heads == 0] = 1
    resp[0, 1, table.heads == 10] = 1
    thetas, _ = m_step(table, resp, np.full((1, 2), 0.5), np.full((1, 2), 0.5), learn=True)
    assert thetas.tolist() == [[EPS, 1 - EPS]]


def test_m_step_keeps_an_empty_components_theta():
    _, _, table = make_table(6)
    resp = np.zeros((1, 2, table.heads.size))
    resp[0, 0] = 1.0
    thetas, weights = m_step(table, resp, np.array([[0.4, 0.77]]), np.full((1, 2), 0.5), True)
    assert thetas[0, 1] == 0.77
    assert np.isfinite(np.log(weights)).all()


def test_run_em_runs_restarts_independently():
    _, _, table = make_table(7)
    rng = np.random.RandomState(8)
    thetas = rng.uniform(0.1, 0.9, size=(5, 2))
    weights = np.full((5, 2), 0.5)
    together = run_em(table, thetas, weights, learn=True, tol=1e-9, max_iter=500)
    for r in range(5):
        alone = run_em(
            table, thetas[r : r + 1], weights[r : r + 1], learn=True, tol=1e-9, max_iter=500
        )
        np.testing.assert_allclose(together.thetas[r], alone.thetas[0], rtol=1e-12)
        assert together.n_iter[r] == alone.n_iter[0]
        np.testing.assert_allclose(
            together.history[: together.n_iter[r], r], alone.history[:, 0], rtol=1e-12
        )


def test_newton_step_at_the_maximum_is_kept_through_rounding():
    # At the maximum a Newton step gains nothing, and rounding can leave the new
    # log-likelihood a few ulps below the old. Refusing such a step would damp the next
    # one and force another SQUAREM cycle on every run, for no gain.
    rng = np.random.RandomState(30)
    heads = rng.binomial(10, np.array([0.3, 0.7])[rng.randint(2, size=30)])
    table = tally(heads, np.full(30, 10))
    start = (np.array([[0.3, 0.7]]), np.array([[0.5, 0.5]]))
    best = run_em(table, *start, learn=True, tol=0.0, max_iter=2000)
    # Many copies of the maximum, each nudged by a relative 1e-12: some land a step whose
    # log-likelihood rounds below the start.
    nudge = 1.0 + 1e-12 * np.random.RandomState(1).standard_normal((64, 2))
    thetas, weights = best.thetas * nudge, best.weights * nudge
    weights /= weights.sum(axis=1, keepdims=True)
    batch = _start(table, thetas, weights, learn=True, full_newton=False)
    before = batch.ll.copy()
    _newton_try(table, batch, learn=True)
    assert batch.all_full and not batch.damping.any()
    # Kept, and no lower than the start beyond rounding.
    assert (batch.ll - before).min() >= -16 * np.finfo(float).eps * abs(before[0])
