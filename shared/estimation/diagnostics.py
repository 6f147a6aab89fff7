"""Pure diagnostics around a binomial-mixture fit: overdispersion, ICL, degenerate components."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import xlogy
from scipy.stats import norm

from shared.estimation._counts import tally_draws
from shared.estimation._validation import check_positive_int, max_identifiable_components

# Components count as duplicates when their thetas lie closer than this.
THETA_TOLERANCE = 1e-3


@dataclass(frozen=True)
class TaroneTest:
    """Tarone's (1979) score test of the binomial against overdispersion (one-sided).

    ``statistic`` is Z = (S - sum n_i) / sqrt(2 sum n_i (n_i - 1)) with
    S = sum (x_i - n_i p)^2 / (p (1 - p)) and p the pooled heads fraction; under a single
    binomial Z is asymptotically standard normal, and ``p_value`` = P(N(0, 1) >= Z).
    ``dispersion`` = S / sum n_i, the observed variance over the binomial one (1 without
    overdispersion). NaN statistic and p-value when undefined (p is 0 or 1, or every draw
    has one flip), and then ``overdispersed`` is False.
    """

    statistic: float
    p_value: float
    overdispersed: bool
    level: float
    heads_fraction: float
    dispersion: float


def tarone_test(
    heads: ArrayLike,
    trials: ArrayLike | int,
    *,
    sample_weight: ArrayLike | None = None,
    level: float = 0.01,
) -> TaroneTest:
    """Tarone's test for binomial overdispersion; draws may have different numbers of flips.

    ``sample_weight`` gives each row's integer multiplicity; ``level`` is the test's size.
    """
    # Over the distinct pairs with their counts: the same sums as over the draws.
    table = tally_draws(heads, trials, sample_weight)
    c, nf = table.counts, table.design_n
    hf = table.design_t[0]
    total_flips = table.n_flips
    p = float(c @ hf) / total_flips
    spread = float(c @ (nf * (nf - 1.0)))
    if not 0.0 < p < 1.0 or spread <= 0.0:
        return TaroneTest(math.nan, math.nan, False, level, p, math.nan)
    s = float(c @ (hf - nf * p) ** 2) / (p * (1.0 - p))
    z = (s - total_flips) / math.sqrt(2.0 * spread)
    p_value = float(norm.sf(z))
    return TaroneTest(z, p_value, bool(p_value < level), level, p, s / total_flips)


def classification_entropy(posterior: np.ndarray, counts: np.ndarray) -> float:
    """-sum_i c_i sum_k tau_ik log tau_ik for posteriors ``posterior`` (M, K), counts (M,)."""
    tau = np.asarray(posterior, dtype=np.float64)
    # xlogy: 0 log 0 = 0 without a warning to silence.
    terms = xlogy(tau, tau)
    return float(-(np.asarray(counts, dtype=np.float64) @ np.add.reduce(terms, 1)))


def icl(bic: float, posterior: np.ndarray, counts: np.ndarray) -> float:
    """Integrated completed likelihood in BIC's scale (Biernacki, Celeux & Govaert 2000):
    BIC + 2 x :func:`classification_entropy` (lower is better)."""
    return float(bic + 2.0 * classification_entropy(posterior, counts))


@dataclass(frozen=True)
class Degeneracy:
    """Components that a fit cannot tell apart or barely uses.

    ``small_weights``: indices k with weight_k < 1 / n_draws (less than one draw's worth);
    ``close_pairs``: index pairs (j, k), j < k, with |theta_j - theta_k| < ``theta_tolerance``.
    """

    small_weights: list[int]
    close_pairs: list[tuple[int, int]]
    theta_tolerance: float

    @property
    def degenerate(self) -> bool:
        """True when any component is flagged."""
        return bool(self.small_weights or self.close_pairs)


def degenerate_components(
    thetas: ArrayLike,
    weights: ArrayLike,
    n_draws: int,
    *,
    theta_tolerance: float = THETA_TOLERANCE,
) -> Degeneracy:
    """Flag components with a weight below 1/``n_draws`` and pairs of nearly equal thetas."""
    th = np.asarray(thetas, dtype=np.float64).ravel()
    w = np.asarray(weights, dtype=np.float64).ravel()
    n = check_positive_int(n_draws, "n_draws")
    small = [int(k) for k in np.flatnonzero(w < 1.0 / n)]
    close = [
        (j, k)
        for j in range(th.size)
        for k in range(j + 1, th.size)
        if abs(th[j] - th[k]) < theta_tolerance
    ]
    return Degeneracy(small, close, float(theta_tolerance))


def component_limit(max_components: Any, *, n_pairs: int, max_trials: int) -> int:
    """Largest K that ``"auto"`` tries: the smallest of ``max_components``, the number of
    distinct (heads, flips) pairs, and the identifiable limit (Teicher: 2K - 1 <= flips)."""
    top = check_positive_int(max_components, "max_components")
    return max(1, min(top, int(n_pairs), max_identifiable_components(max_trials)))
