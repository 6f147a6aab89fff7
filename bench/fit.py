"""Benchmark: BinomialMixture (EM, 10 restarts) against the GMM baseline (one init).

Run as ``.venv/bin/python bench/fit.py`` (N = 30 and 10**3 .. 10**6 draws) or with
``--quick`` (N up to 10**5). Draws have 10 flips from coins 0.3 and 0.7 with equal
probability; both methods are timed side by side on the same data, their calls
alternating. Every cell is the median of at least 3 runs; ``EM iter`` is the median of
``n_iter_`` over those runs.
A second table fits Geissler's Saxony families (K = 2, 3) and reports the iterations and
the distance to the best log-likelihood of any setting tried, so runs of this script on
two versions of the estimator can be compared. Then the warm-started refit the bootstrap
runs (an explicit start and 2 screened random ones, on [heads, flips, count] rows), and the
input checks and tally of 10**6 raw draws (one pass over the data) next to a bare
np.bincount of the same draws.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.estimation import BinomialMixture, fit_gmm_proportions  # noqa: E402
from shared.estimation._counts import tally_draws  # noqa: E402

COINS = np.array([0.3, 0.7])
FLIPS = 10
# Families of 12 children with 0 .. 12 boys, Saxony (Geissler; Lindsey & Altham 1998).
GEISSLER = np.array([3, 24, 104, 286, 670, 1033, 1343, 1112, 829, 478, 181, 45, 7])


def simulate(n_draws: int, seed: int) -> np.ndarray:
    """Heads counts of ``n_draws`` draws, each from one of COINS picked at random."""
    rng = np.random.RandomState(seed)
    return rng.binomial(FLIPS, COINS[rng.randint(2, size=n_draws)])


def timed(
    fns: Sequence[Callable[[], tuple[np.ndarray, int]]], repeats: int
) -> list[tuple[float, np.ndarray, float]]:
    """For each of ``fns``: median wall time of ``repeats`` calls, the last call's thetas,
    and median iterations. The calls alternate (one of each, ``repeats`` times), so a noisy
    stretch of the machine slows every function alike instead of the one it fell on."""
    times: list[list[float]] = [[] for _ in fns]
    iters: list[list[int]] = [[] for _ in fns]
    thetas = [np.empty(0) for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            thetas[i], n_iter = fn()
            times[i].append(time.perf_counter() - start)
            iters[i].append(n_iter)
    return [
        (statistics.median(t), th, statistics.median(it))
        for t, th, it in zip(times, thetas, iters, strict=True)
    ]


def row(n_draws: int, repeats: int) -> str:
    """One table row for ``n_draws`` draws."""
    heads = simulate(n_draws, seed=n_draws)

    def em() -> tuple[np.ndarray, int]:
        model = BinomialMixture(2, n_init=10, random_state=0).fit(heads, FLIPS)
        return model.thetas_, model.n_iter_

    def gmm() -> tuple[np.ndarray, int]:
        fit = fit_gmm_proportions(heads, FLIPS, 2, random_state=0, n_init=1)
        return fit["means"], fit["n_iter"]

    em()  # warm caches before timing
    gmm()
    (em_time, em_thetas, em_iter), (gmm_time, gmm_thetas, _) = timed((em, gmm), repeats)
    em_err = np.abs(em_thetas - COINS).max()
    gmm_err = np.abs(gmm_thetas - COINS).max()
    return (
        f"{n_draws:>9,d} {em_time * 1e3:>10.2f} {gmm_time * 1e3:>10.2f} "
        f"{gmm_time / em_time:>8.1f}x {em_iter:>8.0f} {em_err:>10.5f} {gmm_err:>10.5f}"
    )


def geissler_rows(repeats: int) -> list[str]:
    """Iterations, time and log-likelihood gap for Geissler's families with the defaults."""
    heads = np.repeat(np.arange(GEISSLER.size), GEISSLER)
    lines = []
    for k in (2, 3):
        results, times = [], []
        for _ in range(repeats):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                start = time.perf_counter()
                model = BinomialMixture(k, random_state=0).fit(heads, 12)
                times.append(time.perf_counter() - start)
            results.append((model, len(caught)))
        # The reference: the best of a long, tight run and the default fit.
        ref = BinomialMixture(k, random_state=1, tol=0, max_iter=20_000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref.fit(heads, 12)
        model, n_warn = results[-1]
        best = max(ref.log_likelihood_, model.log_likelihood_)
        lines.append(
            f"  K={k}: median iterations {statistics.median(m.n_iter_ for m, _ in results):.0f}, "
            f"{statistics.median(times) * 1e3:.1f} ms, converged={model.converged_}, "
            f"warnings={n_warn}, gap to best {best - model.log_likelihood_:.1e}, "
            f"thetas {np.round(model.thetas_, 4).tolist()}"
        )
    return lines


def warm_row(n_draws: int, repeats: int) -> str:
    """Milliseconds per warm-started refit (the bootstrap's) on ``n_draws`` draws."""
    heads = simulate(n_draws, seed=n_draws)
    fit = BinomialMixture(2, random_state=0).fit(heads, FLIPS)
    start = {"thetas": fit.thetas_.tolist(), "weights": fit.weights_.tolist()}
    rows, counts = np.unique(heads, return_counts=True)
    flips = np.full(rows.size, FLIPS)
    rng = np.random.default_rng(0)

    def refit() -> tuple[np.ndarray, int]:
        model = BinomialMixture(2, init=start, n_random_init=2, random_state=rng)
        model.fit(rows, flips, sample_weight=counts)
        return model.thetas_, model.n_iter_

    refit()
    [(refit_time, _, n_iter)] = timed((refit,), repeats)
    return (
        f"  {n_draws:,d} draws ({rows.size} rows): {refit_time * 1e3:.2f} ms per refit, "
        f"median iterations {n_iter:.0f}"
    )


def tally_row(repeats: int) -> str:
    """Checks and tally of 10**6 raw draws with varying flips and counts, and a bincount."""
    rng = np.random.RandomState(0)
    trials = rng.randint(1, 15, size=10**6)
    heads = rng.binomial(trials, 0.5)
    counts = rng.randint(1, 4, size=10**6)

    def checked() -> tuple[np.ndarray, int]:
        return tally_draws(heads, trials, counts).counts, 0

    def bare() -> tuple[np.ndarray, int]:
        return np.bincount(trials * 15 + heads, weights=counts), 0

    (checked_time, _, _), (bare_time, _, _) = timed((checked, bare), repeats)
    return (
        f"  checks + tally, one pass: {checked_time * 1e3:.2f} ms; "
        f"np.bincount of the same draws, unchecked: {bare_time * 1e3:.2f} ms"
    )


def main(argv: list[str] | None = None) -> None:
    """Print the benchmark tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N up to 10**5, 3 repeats")
    args = parser.parse_args(argv)
    sizes = [30, 10**3, 10**4, 10**5] if args.quick else [30, 10**3, 10**4, 10**5, 10**6]
    print(
        f"{'N draws':>9} {'EM ms':>10} {'GMM ms':>10} {'GMM/EM':>9} {'EM iter':>8} "
        f"{'EM err':>10} {'GMM err':>10}"
    )
    print(
        "  (EM: BinomialMixture n_init=10; GMM: fit_gmm_proportions n_init=1; medians of "
        "3-7 runs; err = max |theta_hat - theta|)"
    )
    for n_draws in sizes:
        repeats = 3 if args.quick or n_draws >= 10**6 else 7
        print(row(n_draws, repeats), flush=True)
    print("Geissler, 6,115 families of 12 (defaults, random_state=0):")
    for line in geissler_rows(3):
        print(line, flush=True)
    print("Warm-started refit (init thetas and weights, n_random_init=2; medians of 7 runs):")
    for n_draws in (30, 1000):
        print(warm_row(n_draws, 7), flush=True)
    print("10^6 raw draws, 1-14 flips each, counts 1-3 (medians of 7 runs):")
    print(tally_row(7), flush=True)


if __name__ == "__main__":
    main()
