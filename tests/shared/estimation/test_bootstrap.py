"""Bootstrap intervals: replicate streams, resampling, label alignment, summaries, coverage."""

from __future__ import annotations

import itertools
import json
import random
import time

import numpy as np
import pytest
from scipy.stats import binom, chisquare

import shared.estimation.bootstrap as bootstrap_module
from shared.estimation import BinomialMixture
from shared.estimation.bootstrap import (
    AMBIGUITY_THRESHOLD,
    align,
    bootstrap,
    bootstrap_chunk,
    fit_replicate,
    replicate_rng,
    resample,
    summarize_bootstrap,
)

# Two coins far apart, as the service would see them: distinct (heads, 12, count) rows.
THETAS, WEIGHTS = np.array([0.25, 0.7]), np.array([0.4, 0.6])


def simulate_rows(n_draws: int, flips: int, seed: int, thetas=THETAS, weights=WEIGHTS):
    """``n_draws`` draws of ``flips`` flips from the mixture, as (heads, trials, counts) rows."""
    rng = np.random.default_rng(seed)
    coin = rng.choice(len(thetas), size=n_draws, p=weights)
    heads, counts = np.unique(rng.binomial(flips, np.asarray(thetas)[coin]), return_counts=True)
    return heads, np.full(heads.size, flips), counts


def stream(index: int, seed: int = 0):
    return replicate_rng(seed, "bootstrap", index)


def full_fit(heads, trials, counts, k=2, seed=0):
    model = BinomialMixture(k, random_state=seed).fit(heads, trials, sample_weight=counts)
    return model.thetas_, model.weights_


def uneven_chunks(indices, n_chunks, seed):
    """``indices`` cut at random places into ``n_chunks`` non-empty chunks, in shuffled order."""
    gen = random.Random(seed)
    cuts = sorted(gen.sample(range(1, len(indices)), n_chunks - 1))
    chunks = [indices[a:b] for a, b in zip([0, *cuts], [*cuts, len(indices)], strict=True)]
    gen.shuffle(chunks)
    return chunks


# --- replicate streams ---------------------------------------------------------------


def test_a_replicate_stream_depends_on_seed_analysis_stage_and_index_only():
    first = replicate_rng(7, "bootstrap", 3).random(4)
    np.testing.assert_array_equal(first, replicate_rng(7, "bootstrap", 3).random(4))
    others = [
        replicate_rng(8, "bootstrap", 3),
        replicate_rng(7, "bootstrap", 4),
        replicate_rng(7, "components_test", 3),
        replicate_rng(7, "bootstrap", 3, stage=1),
    ]
    for rng in others:
        assert not np.array_equal(first, rng.random(4))


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((1, "jackknife", 0), "analysis"),
        ((-1, "bootstrap", 0), "seed"),
        ((1, "bootstrap", -2), "index"),
        ((1.5, "bootstrap", 0), "seed"),
    ],
)
def test_replicate_rng_names_the_bad_argument(args, field):
    with pytest.raises(ValueError, match=field):
        replicate_rng(*args)


# --- resampling ----------------------------------------------------------------------


def test_nonparametric_resample_keeps_the_total_and_draws_only_observed_rows():
    heads, trials, counts = [0, 3, 5, 5, 9], [10, 10, 10, 12, 12], [4, 30, 50, 1, 15]
    observed = set(zip(heads, trials, strict=True))
    for index in range(20):
        h, n, c = resample("nonparametric", heads, trials, counts, [], [], stream(index, 1))
        assert c.sum() == 100 and (c > 0).all()
        assert set(zip(h.tolist(), n.tolist(), strict=True)) <= observed
        # Distinct rows, ordered by (trials, heads).
        keys = list(zip(n.tolist(), h.tolist(), strict=True))
        assert keys == sorted(set(keys))


def test_nonparametric_resample_draws_each_row_in_proportion_to_its_count():
    """Over 400 resamples of 100 draws, a row holding 30 draws is drawn Binomial(40,000, 0.3)
    times in all: the total lies in that distribution's 99.9% band."""
    heads, trials, counts = [0, 3, 5], [10, 10, 10], [20, 30, 50]
    total = sum(
        int(c[h == 3].sum())
        for h, _, c in (
            resample("nonparametric", heads, trials, counts, [], [], stream(i, 2))
            for i in range(400)
        )
    )
    assert binom.ppf(0.0005, 40_000, 0.3) <= total <= binom.ppf(0.9995, 40_000, 0.3)


@pytest.mark.parametrize(
    ("per_flips", "label"),
    [
        ((200_000, 200_000), "a multinomial over heads counts per flip count and coin"),
        ((200_000, 5), "a binomial per draw within a large data set"),
        ((3, 3), "every draw drawn one by one"),
    ],
)
def test_parametric_resample_keeps_each_draws_flips_and_follows_the_mixture(per_flips, label):
    """Flips 6 and 15 with ``per_flips`` draws; pooled over 50 resamples, the heads counts
    for each number of flips pass a chi-squared test (p > 0.001) against the mixture's pmf
    from scipy.stats.binom."""
    thetas, weights = np.array([0.2, 0.65]), np.array([0.3, 0.7])
    heads, trials, counts = [1, 4], [6, 15], list(per_flips)
    pooled = {6: np.zeros(7), 15: np.zeros(16)}
    for index in range(50):
        h, n, c = resample("parametric", heads, trials, counts, thetas, weights, stream(index, 3))
        assert (h <= n).all() and (c > 0).all()
        for flips, draws in zip((6, 15), per_flips, strict=True):
            assert c[n == flips].sum() == draws, label
            np.add.at(pooled[flips], h[n == flips], c[n == flips])
    for flips, observed in pooled.items():
        support = np.arange(flips + 1)
        pmf = weights @ binom.pmf(support[None, :], flips, thetas[:, None])
        expected = pmf * observed.sum()
        # Merge sparse tail cells so the chi-squared approximation holds.
        keep = expected >= 5
        obs = np.append(observed[keep], observed[~keep].sum())
        exp = np.append(expected[keep], expected[~keep].sum())
        if exp[-1] == 0:
            obs, exp = obs[:-1], exp[:-1]
        assert chisquare(obs, exp).pvalue > 0.001, (label, flips)


def test_parametric_resample_with_many_distinct_flip_counts_keeps_each_count():
    """600 distinct flip counts, one draw each (the path of one binomial per draw)."""
    trials = np.arange(1, 601)
    heads = trials // 2
    counts = np.ones(600, dtype=np.int64)
    h, n, c = resample("parametric", heads, trials, counts, [0.3, 0.8], [0.4, 0.6], stream(0, 4))
    np.testing.assert_array_equal(n, trials)
    assert (c == 1).all() and (h <= n).all()
    # With 200 or more flips a draw's heads fraction is within 0.25 of its coin's theta
    # (over 7 standard deviations), so it tells the coin; the 401 such draws pick the
    # high coin Binomial(401, 0.6) times.
    share = h[n >= 200] / n[n >= 200]
    high = share > 0.55
    assert (np.abs(share - np.where(high, 0.8, 0.3)) < 0.25).all()
    assert binom.ppf(0.0005, 401, 0.6) <= high.sum() <= binom.ppf(0.9995, 401, 0.6)


@pytest.mark.parametrize("kind", ["parametric", "nonparametric"])
def test_resample_cost_grows_with_rows_not_draws(kind):
    """10**12 draws could not be drawn one by one; rows of counts take no time."""
    heads, trials, counts = [2, 7], [10, 10], [4 * 10**11, 6 * 10**11]
    start = time.perf_counter()
    h, n, c = resample(kind, heads, trials, counts, THETAS, WEIGHTS, stream(0, 5))
    assert time.perf_counter() - start < 1.0
    assert c.sum() == 10**12


def test_resample_rejects_an_unknown_kind_and_bad_mixtures():
    with pytest.raises(ValueError, match="kind"):
        resample("jackknife", [1], [2], [3], [0.5], [1.0], stream(0, 0))
    with pytest.raises(ValueError, match="thetas"):
        resample("parametric", [1], [2], [3], [1.5], [1.0], stream(0, 0))
    with pytest.raises(ValueError, match="weights"):
        resample("parametric", [1], [2], [3], [0.5, 0.6], [1.0], stream(0, 0))
    with pytest.raises(ValueError, match="heads"):
        resample("nonparametric", [3], [2], [3], [], [], stream(0, 0))


# --- alignment -----------------------------------------------------------------------


def test_align_undoes_a_swap():
    perm, ambiguous = align([0.2, 0.8], [0.79, 0.22])
    assert perm.tolist() == [1, 0] and not ambiguous
    perm, ambiguous = align([0.8, 0.2, 0.5], [0.21, 0.52, 0.83])
    assert np.asarray([0.21, 0.52, 0.83])[perm].tolist() == [0.83, 0.21, 0.52]
    assert not ambiguous


def test_align_keeps_order_when_a_replicate_moves_past_the_reference():
    """Absolute differences would tie here (both assignments cost 0.35)."""
    perm, ambiguous = align([0.3, 0.4], [0.45, 0.6])
    assert perm.tolist() == [0, 1] and not ambiguous


def test_align_flags_nearly_equal_thetas_as_ambiguous():
    assert align([0.3, 0.7], [0.5, 0.5 + 1e-4])[1]
    assert align([0.5, 0.5 + 1e-4], [0.3, 0.7])[1]
    assert not align([0.3, 0.7], [0.45, 0.55])[1]


def test_align_with_one_coin_is_never_ambiguous():
    assert align([0.4], [0.6]) == (np.array([0]), False)


@pytest.mark.parametrize("seed", range(40))
def test_align_matches_brute_force_over_every_permutation(seed):
    """Best and second-best assignments by enumerating all 4! permutations."""
    rng = np.random.default_rng(seed)
    ref = rng.random(4)
    # Some replicates close to the reference, some with two nearly equal coins.
    thetas = np.clip(ref[rng.permutation(4)] + rng.normal(0, 0.05, 4), 0, 1)
    if seed % 3 == 0:
        thetas[1] = thetas[0] + rng.normal(0, 0.003)
    costs = sorted(
        (sum((ref[j] - thetas[p[j]]) ** 2 for j in range(4)), p)
        for p in itertools.permutations(range(4))
    )
    perm, ambiguous = align(ref, thetas)
    assert tuple(perm.tolist()) == costs[0][1]
    assert ambiguous == (costs[1][0] - costs[0][0] < AMBIGUITY_THRESHOLD)


def test_align_refuses_different_numbers_of_coins():
    with pytest.raises(ValueError, match="as many coins"):
        align([0.2, 0.8], [0.5])


# --- one replicate -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["parametric", "nonparametric"])
def test_a_replicate_comes_back_in_the_references_order(kind):
    heads, trials, counts = simulate_rows(500, 12, seed=1)
    thetas, weights = full_fit(heads, trials, counts)
    # The reference listed high coin first: the replicate follows it.
    out = fit_replicate(kind, heads, trials, counts, thetas[::-1], weights[::-1], stream(0, 9))
    assert json.loads(json.dumps(out)) == out
    assert set(out) == {"thetas", "weights", "failed", "ambiguous"}
    assert not out["failed"] and not out["ambiguous"]
    assert out["thetas"][0] > out["thetas"][1]
    np.testing.assert_allclose(out["thetas"], thetas[::-1], atol=0.1)
    assert sum(out["weights"]) == pytest.approx(1.0)


def test_a_replicate_of_an_equal_weights_fit_keeps_the_weights_equal():
    thetas, weights = [0.3, 0.7], [0.5, 0.5]
    heads, trials, counts = np.array([2, 3, 7, 8]), np.array([10] * 4), np.array([5, 6, 4, 5])
    for kind in ("parametric", "nonparametric"):
        learnt = fit_replicate(kind, heads, trials, counts, thetas, weights,
                               np.random.default_rng(3))
        equal = fit_replicate(kind, heads, trials, counts, thetas, weights,
                              np.random.default_rng(3), mixing="equal")
        assert equal["weights"] == [0.5, 0.5]
        assert learnt["weights"] != [0.5, 0.5]


def test_a_replicate_that_cannot_be_fitted_fails():
    """One distinct row cannot hold two coins: the refit raises."""
    out = fit_replicate("nonparametric", [3], [10], [50], [0.2, 0.5], [0.5, 0.5], stream(0, 0))
    assert out == {"thetas": [], "weights": [], "failed": True, "ambiguous": False}


def test_a_replicate_that_does_not_converge_fails(monkeypatch):
    class OneStep(BinomialMixture):
        def fit(self, *args, **kwargs):
            self.max_iter = 1
            return super().fit(*args, **kwargs)

    monkeypatch.setattr(bootstrap_module, "BinomialMixture", OneStep)
    heads, trials, counts = simulate_rows(300, 12, seed=2)
    out = fit_replicate("parametric", heads, trials, counts, [0.3, 0.6], [0.5, 0.5], stream(0, 0))
    assert out["failed"] and out["thetas"] == []


# --- chunks and summaries ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["parametric", "nonparametric"])
def test_the_same_seed_gives_the_same_result_however_the_work_is_chunked(kind):
    """B = 60 replicates in one chunk, or in 7 uneven chunks run in shuffled order."""
    heads, trials, counts = simulate_rows(200, 10, seed=3)
    thetas, weights = full_fit(heads, trials, counts)
    whole = bootstrap_chunk(
        kind, heads, trials, counts, thetas, weights, seed=11, indices=range(60)
    )
    pieces = [
        replicate
        for chunk in uneven_chunks(list(range(60)), 7, seed=5)
        for replicate in bootstrap_chunk(
            kind, heads, trials, counts, thetas, weights, seed=11, indices=chunk
        )
    ]
    assert sorted(pieces, key=lambda r: r["index"]) == whole
    summary = summarize_bootstrap(pieces, kind=kind, level=0.9)
    assert summary == summarize_bootstrap(whole, kind=kind, level=0.9)
    assert summary == bootstrap(
        kind, heads, trials, counts, thetas, weights, replicates=60, level=0.9, seed=11
    )
    other = bootstrap(
        kind, heads, trials, counts, thetas, weights, replicates=60, level=0.9, seed=12
    )
    assert other != summary


def replicate(index, thetas, weights=(0.5, 0.5), failed=False, ambiguous=False):
    if failed:
        return {"index": index, "thetas": [], "weights": [], "failed": True, "ambiguous": False}
    return {
        "index": index,
        "thetas": list(thetas),
        "weights": list(weights),
        "failed": False,
        "ambiguous": ambiguous,
    }


def test_summary_has_exactly_the_documented_fields_and_ignores_order():
    rng = np.random.default_rng(0)
    reps = [replicate(i, rng.random(2), rng.dirichlet([1, 1])) for i in range(50)]
    reps[3] = replicate(3, [], failed=True)
    reps[8]["ambiguous"] = reps[9]["ambiguous"] = True
    summary = summarize_bootstrap(reps, kind="parametric", level=0.95)
    assert list(summary) == [
        "replicates",
        "kind",
        "level",
        "thetas",
        "weights",
        "failed",
        "ambiguous",
    ]
    assert (summary["replicates"], summary["failed"], summary["ambiguous"]) == (50, 1, 2)
    assert summary["kind"] == "parametric" and summary["level"] == 0.95
    assert json.loads(json.dumps(summary)) == summary
    assert all(type(x) is float for pair in summary["thetas"] + summary["weights"] for x in pair)
    shuffled = reps[::-1]
    random.Random(1).shuffle(shuffled)
    assert summarize_bootstrap(shuffled, kind="parametric", level=0.95) == summary


@pytest.mark.parametrize(("b", "lo", "hi"), [(39, 1, 39), (199, 5, 195), (79, 2, 78)])
def test_percentile_bounds_are_the_order_statistics_at_b_plus_1_times_the_tails(b, lo, hi):
    """At level 0.95 with (B + 1) * 0.025 whole, the bounds are the lo-th and hi-th smallest."""
    values = np.random.default_rng(b).random((b, 2))
    reps = [replicate(i, values[i], [0.5, 0.5]) for i in range(b)]
    summary = summarize_bootstrap(reps, kind="nonparametric", level=0.95)
    ordered = np.sort(values, axis=0)
    assert summary["thetas"] == [[ordered[lo - 1, j], ordered[hi - 1, j]] for j in range(2)]


def test_failed_replicates_are_left_out_of_the_intervals():
    reps = [replicate(i, [0.1 * i + 0.05]) for i in range(9)]
    reps += [replicate(i, [], failed=True) for i in range(9, 12)]
    summary = summarize_bootstrap(reps, kind="parametric", level=0.8)
    # 9 usable values 0.05 .. 0.85: positions 10 * 0.1 = 1 and 10 * 0.9 = 9.
    assert summary["thetas"] == [[pytest.approx(0.05), pytest.approx(0.85)]]
    assert (summary["replicates"], summary["failed"]) == (12, 3)


def test_a_summary_with_every_replicate_failed_has_no_intervals():
    reps = [replicate(i, [], failed=True) for i in range(4)]
    summary = summarize_bootstrap(reps, kind="parametric", level=0.95)
    assert summary["thetas"] == summary["weights"] == [] and summary["failed"] == 4


def test_a_summary_refuses_a_replicate_counted_twice_and_mixed_sizes():
    with pytest.raises(ValueError, match="twice"):
        summarize_bootstrap(
            [replicate(1, [0.2]), replicate(1, [0.2])], kind="parametric", level=0.9
        )
    with pytest.raises(ValueError, match="number of coins"):
        summarize_bootstrap(
            [replicate(0, [0.2]), replicate(1, [0.2, 0.3])], kind="parametric", level=0.9
        )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"replicates": 0}, "replicates"),
        ({"replicates": 2.5}, "replicates"),
        ({"level": 1.0}, "level"),
        ({"level": "high"}, "level"),
        ({"kind": "jackknife"}, "kind"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bootstrap_names_the_bad_argument(overrides, field):
    args = {"kind": "parametric", "replicates": 5, "level": 0.95, "seed": 0, **overrides}
    kind = args.pop("kind")
    with pytest.raises(ValueError, match=field):
        bootstrap(kind, [2, 7], [10, 10], [5, 5], [0.2, 0.7], [0.5, 0.5], **args)


# --- coverage ------------------------------------------------------------------------

# 400 data sets of 300 draws of 15 flips from coins 0.25 and 0.7 (weights 0.4, 0.6),
# each with B = 39 replicates: at level 0.95 the bounds are then the smallest and the
# largest replicate, exact order statistics, and 400 x 39 refits take about 35 s.
COVERAGE_SETS, COVERAGE_DRAWS, COVERAGE_FLIPS, COVERAGE_B = 400, 300, 15, 39


def coverage(kind: str) -> np.ndarray:
    """Share of data sets whose 95% interval covers each true theta."""
    covered = np.zeros(2)
    for d in range(COVERAGE_SETS):
        heads, trials, counts = simulate_rows(COVERAGE_DRAWS, COVERAGE_FLIPS, seed=10_000 + d)
        thetas, weights = full_fit(heads, trials, counts, seed=d)
        summary = bootstrap(
            kind,
            heads,
            trials,
            counts,
            thetas,
            weights,
            replicates=COVERAGE_B,
            level=0.95,
            seed=d,
        )
        bounds = np.asarray(summary["thetas"])
        covered += (bounds[:, 0] <= THETAS) & (THETAS <= bounds[:, 1])
    return covered / COVERAGE_SETS


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["parametric", "nonparametric"])
def test_percentile_intervals_cover_the_true_thetas_at_the_nominal_rate(kind):
    """Each theta's coverage lies in the 99.9% binomial band around 0.95 for 400 data sets."""
    rates = coverage(kind)
    low = binom.ppf(0.0005, COVERAGE_SETS, 0.95) / COVERAGE_SETS
    high = binom.ppf(0.9995, COVERAGE_SETS, 0.95) / COVERAGE_SETS
    assert ((low <= rates) & (rates <= high)).all(), (kind, rates.tolist(), low, high)
