"""Pure, I/O-free estimators of hidden coin biases, following scikit-learn's conventions."""

from shared.estimation._validation import max_identifiable_components
from shared.estimation.binomial import BinomialMixture, select_components
from shared.estimation.gmm import fit_gmm_proportions

__all__ = [
    "BinomialMixture",
    "fit_gmm_proportions",
    "max_identifiable_components",
    "select_components",
]
