"""Pure, I/O-free estimators of hidden coin biases, following scikit-learn's conventions."""

from shared.estimation._validation import max_identifiable_components
from shared.estimation.binomial import BinomialMixture, PosteriorTable, select_components
from shared.estimation.diagnostics import (
    Degeneracy,
    TaroneTest,
    classification_entropy,
    component_limit,
    degenerate_components,
    icl,
    tarone_test,
)
from shared.estimation.gmm import fit_gmm_proportions

__all__ = [
    "BinomialMixture",
    "Degeneracy",
    "PosteriorTable",
    "TaroneTest",
    "classification_entropy",
    "component_limit",
    "degenerate_components",
    "fit_gmm_proportions",
    "icl",
    "max_identifiable_components",
    "select_components",
    "tarone_test",
]
