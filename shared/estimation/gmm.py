"""The baseline the project started from: a Gaussian mixture on each draw's heads fraction."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.mixture import GaussianMixture

from shared.estimation._validation import check_counts, check_n_components, check_positive_int


def fit_gmm_proportions(
    heads: ArrayLike,
    trials: ArrayLike | int,
    n_components: int = 2,
    random_state: Any = None,
    n_init: int = 1,
) -> dict[str, Any]:
    """Fit scikit-learn's GaussianMixture (k-means init) to the heads fractions.

    Returns ``means`` (sorted ascending), ``weights`` and ``stds`` in the same order,
    ``converged`` and ``n_iter``.
    """
    heads_arr, trials_arr = check_counts(heads, trials)
    k = check_n_components(n_components, int(trials_arr.max()))
    n_init = check_positive_int(n_init, "n_init")
    fractions = (heads_arr / trials_arr).reshape(-1, 1)
    n_distinct = np.unique(fractions).size
    if n_distinct < k:
        raise ValueError(
            f"n_components={k} needs at least {k} distinct heads fractions, but the draws "
            f"have only {n_distinct}"
        )
    gmm = GaussianMixture(
        n_components=k, init_params="kmeans", n_init=n_init, random_state=random_state
    ).fit(fractions)
    means = gmm.means_[:, 0]
    order = np.argsort(means, kind="stable")
    return {
        "means": means[order],
        "weights": gmm.weights_[order],
        "stds": np.sqrt(gmm.covariances_.reshape(k)[order]),
        "converged": bool(gmm.converged_),
        "n_iter": int(gmm.n_iter_),
    }
