"""Pure, I/O-free estimators of hidden coin biases, following scikit-learn's conventions."""

from shared.estimation._validation import max_identifiable_components
from shared.estimation.binomial import BinomialMixture, PosteriorTable, select_components
from shared.estimation.bootstrap import (
    AMBIGUITY_THRESHOLD,
    align,
    bootstrap_chunk,
    fit_replicate,
    replicate_rng,
    resample,
    summarize_bootstrap,
)
from shared.estimation.components_test import (
    SIGNIFICANCE,
    fit_summary,
    is_significant,
    lrt_chunk,
    null_and_alternative,
    observed_statistic,
    p_value,
)
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

# The in-process drivers bootstrap() and components_test() are not exported here: they
# share their modules' names, and binding them on the package would hide the modules
# (``import shared.estimation.bootstrap as m`` would return the function).
__all__ = [
    "AMBIGUITY_THRESHOLD",
    "BinomialMixture",
    "Degeneracy",
    "PosteriorTable",
    "SIGNIFICANCE",
    "TaroneTest",
    "align",
    "bootstrap_chunk",
    "classification_entropy",
    "component_limit",
    "degenerate_components",
    "fit_gmm_proportions",
    "fit_replicate",
    "fit_summary",
    "icl",
    "is_significant",
    "lrt_chunk",
    "max_identifiable_components",
    "null_and_alternative",
    "observed_statistic",
    "p_value",
    "replicate_rng",
    "resample",
    "select_components",
    "summarize_bootstrap",
    "tarone_test",
]
