"""Benchmark: BinomialMixture (EM, 10 restarts) against the GMM baseline (one init).

Run as ``.venv/bin/python bench/fit.py`` (N = 10**3 .. 10**6 draws) or with ``--quick``.
Draws have 10 flips from coins 0.3 and 0.7 with equal probability; both methods are timed
side by side on the same data, taking the median of a few repeats.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.estimation import BinomialMixture, fit_gmm_proportions  # noqa: E402

COINS = np.array([0.3, 0.7])
FLIPS = 10


def simulate(n_draws: int, seed: int) -> np.ndarray:
    """Heads counts of ``n_draws`` draws, each from one of COINS picked at random."""
    rng = np.random.RandomState(seed)
    return rng.binomial(FLIPS, COINS[rng.randint(2, size=n_draws)])


def timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    """Median wall time of ``repeats`` calls, and the last call's estimated thetas."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        thetas = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), thetas


def row(n_draws: int, repeats: int) -> str:
    """One table row for ``n_draws`` draws."""
    heads = simulate(n_draws, seed=n_draws)

    def em() -> np.ndarray:
        return BinomialMixture(2, n_init=10, random_state=0).fit(heads, FLIPS).thetas_

    def gmm() -> np.ndarray:
        return fit_gmm_proportions(heads, FLIPS, 2, random_state=0, n_init=1)["means"]

    em_time, em_thetas = timed(em, repeats)
    gmm_time, gmm_thetas = timed(gmm, repeats)
    em_err = np.abs(em_thetas - COINS).max()
    gmm_err = np.abs(gmm_thetas - COINS).max()
    return (
        f"{n_draws:>9,d} {em_time * 1e3:>10.2f} {gmm_time * 1e3:>10.2f} "
        f"{gmm_time / em_time:>8.1f}x {em_err:>10.5f} {gmm_err:>10.5f}"
    )


def main(argv: list[str] | None = None) -> None:
    """Print the benchmark table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N up to 10**5, fewer repeats")
    args = parser.parse_args(argv)
    sizes = [10**3, 10**4, 10**5] if args.quick else [10**3, 10**4, 10**5, 10**6]
    print(
        f"{'N draws':>9} {'EM ms':>10} {'GMM ms':>10} {'GMM/EM':>9} {'EM err':>10} {'GMM err':>10}"
    )
    print(
        "  (EM: BinomialMixture n_init=10; GMM: fit_gmm_proportions n_init=1; "
        "err = max |theta_hat - theta|)"
    )
    for n_draws in sizes:
        repeats = 3 if args.quick or n_draws >= 10**6 else 5
        print(row(n_draws, repeats), flush=True)


if __name__ == "__main__":
    main()
