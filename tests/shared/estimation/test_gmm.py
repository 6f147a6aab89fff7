"""The GMM baseline against a direct scikit-learn GaussianMixture call."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from shared.estimation import fit_gmm_proportions


@pytest.mark.parametrize(("k", "n_init"), [(1, 1), (2, 1), (3, 2)])
def test_matches_gaussian_mixture_on_fractions(k, n_init):
    rng = np.random.RandomState(k)
    trials = rng.randint(8, 15, size=500)
    heads = rng.binomial(trials, rng.choice([0.15, 0.5, 0.85][:k], size=500))
    result = fit_gmm_proportions(heads, trials, n_components=k, random_state=3, n_init=n_init)
    gmm = GaussianMixture(k, init_params="kmeans", random_state=3, n_init=n_init)
    gmm.fit((heads / trials).reshape(-1, 1))
    order = np.argsort(gmm.means_.ravel())
    np.testing.assert_allclose(result["means"], gmm.means_.ravel()[order], rtol=1e-12)
    np.testing.assert_allclose(result["weights"], gmm.weights_[order], rtol=1e-12)
    np.testing.assert_allclose(result["stds"], np.sqrt(gmm.covariances_.ravel()[order]))
    assert result["converged"] is True and result["n_iter"] == gmm.n_iter_
    assert np.all(np.diff(result["means"]) >= 0)
