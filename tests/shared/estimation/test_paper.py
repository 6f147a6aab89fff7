"""Do & Batzoglou (2008), Figure 1b: five sets of ten flips, equal weights, 10 iterations."""

from __future__ import annotations

import pytest
from sklearn.exceptions import ConvergenceWarning

from shared.estimation import BinomialMixture

HEADS = [5, 9, 8, 4, 7]
FLIPS = 10


def paper_em(theta_a: float, theta_b: float, iterations: int) -> tuple[float, float]:
    """The paper's arithmetic with plain floats: expected heads/tails per coin, then ratios."""
    for _ in range(iterations):
        heads_a = tails_a = heads_b = tails_b = 0.0
        for h in HEADS:
            like_a = theta_a**h * (1 - theta_a) ** (FLIPS - h)
            like_b = theta_b**h * (1 - theta_b) ** (FLIPS - h)
            p_a = like_a / (like_a + like_b)
            heads_a += p_a * h
            tails_a += p_a * (FLIPS - h)
            heads_b += (1 - p_a) * h
            tails_b += (1 - p_a) * (FLIPS - h)
        theta_a = heads_a / (heads_a + tails_a)
        theta_b = heads_b / (heads_b + tails_b)
    return theta_a, theta_b


def fit_paper(iterations: int) -> BinomialMixture:
    """Fit as in the paper: plain EM from thetaA=0.60, thetaB=0.50, equal weights, tol=0."""
    model = BinomialMixture(
        2, weights="equal", init=[0.60, 0.50], tol=0, max_iter=iterations, acceleration="none"
    )
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        model.fit(HEADS, FLIPS)
    return model


def test_ten_iterations_match_the_published_figure():
    model = fit_paper(10)
    theta_b, theta_a = model.thetas_  # sorted ascending: B is the lower coin
    assert (round(theta_a, 2), round(theta_b, 2)) == (0.80, 0.52)
    assert model.n_iter_ == 10
    assert model.converged_ is False
    assert len(model.log_likelihood_history_) == 10


def test_exact_values_match_the_papers_arithmetic():
    expected_a, expected_b = paper_em(0.60, 0.50, 10)
    model = fit_paper(10)
    assert model.thetas_[1] == pytest.approx(expected_a, abs=1e-12)
    assert model.thetas_[0] == pytest.approx(expected_b, abs=1e-12)


def test_first_iteration_matches_the_published_figure():
    model = fit_paper(1)
    assert (round(model.thetas_[1], 2), round(model.thetas_[0], 2)) == (0.71, 0.58)
    assert paper_em(0.60, 0.50, 1) == pytest.approx((model.thetas_[1], model.thetas_[0]))


def test_weights_stay_equal_and_restart_records_the_start():
    model = fit_paper(10)
    assert model.weights_.tolist() == [0.5, 0.5]
    (record,) = model.restarts_
    assert record["initial_thetas"] == [0.60, 0.50]
    assert record["n_iter"] == 10


def test_converged_run_does_not_warn():
    # filterwarnings=error makes any warning fail this test.
    model = BinomialMixture(2, weights="equal", init=[0.60, 0.50]).fit(HEADS, FLIPS)
    assert model.converged_
    assert model.n_iter_ < 1000
