"""Raw draws are checked and tallied in one pass over the data, chunk by chunk.

The reference tallies are plain-Python counters; "one pass" is watched with an array that
logs every read of its data, and with the traced memory (no temporary as long as the data).
"""

from __future__ import annotations

import tracemalloc
from collections import Counter

import numpy as np
import pytest

from shared.estimation import BinomialMixture, _counts
from shared.estimation._counts import tally_draws

CHUNK = 1000


class ReadLog(np.ndarray):
    """A 1-D array that logs the slices read from it and any operation on all of it.

    Views of it (the chunks) log nothing; a ufunc or numpy function given the whole array,
    or an index that is not a slice, is logged in ``whole``.
    """

    def __new__(cls, values: np.ndarray) -> ReadLog:
        obj = np.asarray(values).view(cls)
        obj.reads, obj.whole, obj.top = [], [], True
        return obj

    def __array_finalize__(self, obj: object) -> None:
        self.reads, self.whole, self.top = None, None, False

    def __getitem__(self, key):
        if self.top:
            if isinstance(key, slice) and key.step in (None, 1):
                self.reads.append(key.indices(len(self))[:2])
            else:
                self.whole.append(f"index {key!r}")
        return super().__getitem__(key)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        for value in inputs + tuple(kwargs.get("out", ())):
            if isinstance(value, ReadLog) and value.top:
                value.whole.append(f"{ufunc.__name__}.{method}")
        plain = tuple(np.asarray(v) if isinstance(v, ReadLog) else v for v in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(
                np.asarray(v) if isinstance(v, ReadLog) else v for v in kwargs["out"]
            )
        return getattr(ufunc, method)(*plain, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        if self.top:
            self.whole.append(func.__name__)
        return super().__array_function__(func, types, args, kwargs)


def reference(heads, trials, counts=None) -> dict[tuple[int, int], int]:
    """Total count of each (heads, trials) pair with a positive count, by a Counter."""
    trials = np.broadcast_to(trials, np.shape(heads))
    counts = np.ones(np.shape(heads), dtype=int) if counts is None else counts
    tally: Counter = Counter()
    for h, n, c in zip(
        np.asarray(heads).tolist(), trials.tolist(), np.asarray(counts).tolist(), strict=True
    ):
        tally[(int(h), int(n))] += int(c)
    return {pair: c for pair, c in tally.items() if c > 0}


def as_dict(table) -> dict[tuple[int, int], int]:
    pairs = zip(table.heads.tolist(), table.trials.tolist(), strict=True)
    return dict(zip(pairs, np.rint(table.counts).astype(int).tolist(), strict=True))


def draws(n_draws: int, seed: int):
    """Varying flips (a value first seen late), heads, and counts with some zeros."""
    rng = np.random.RandomState(seed)
    trials = rng.randint(1, 15, size=n_draws)
    trials[-5:] = 40  # a flip count that only the last chunk holds
    heads = rng.binomial(trials, rng.uniform(0.1, 0.9, size=n_draws))
    counts = rng.randint(0, 4, size=n_draws)
    return heads, trials, counts


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(_counts, "_CHUNK", CHUNK)


@pytest.mark.parametrize("dtype", [np.int64, np.float64])
@pytest.mark.parametrize("form", ["one trials value", "trials per draw", "with counts"])
def test_every_array_is_read_once_in_chunks(small_chunks, dtype, form):
    heads, trials, counts = draws(3 * CHUNK + 17, seed=1)
    if form == "one trials value":
        heads, trials, counts = np.minimum(heads, 12), 12, None
    elif form == "trials per draw":
        counts = None
    h = ReadLog(heads.astype(dtype))
    n = trials if np.isscalar(trials) else ReadLog(trials.astype(dtype))
    w = None if counts is None else ReadLog(counts.astype(dtype))
    logs = [log for log in (h, n, w) if isinstance(log, ReadLog)]
    table = tally_draws(h, n, w)
    assert as_dict(table) == reference(heads, trials, counts)
    for log in logs:
        # One sweep: consecutive slices that cover every draw exactly once, and nothing
        # that reads the whole array.
        assert log.whole == []
        assert log.reads[0][0] == 0 and log.reads[-1][1] == heads.size
        assert all(a[1] == b[0] for a, b in zip(log.reads, log.reads[1:], strict=False))
        assert len(log.reads) >= 3


@pytest.mark.parametrize("dtype", [np.int64, np.float64])
def test_checks_and_tally_hold_no_temporary_as_long_as_the_data(dtype):
    # A full-length temporary of even one byte per draw (a comparison's result) would
    # exceed this; the chunks' temporaries stay well below it.
    n_draws = 1 << 22
    heads, trials, counts = (a.astype(dtype) for a in draws(n_draws, seed=2))
    tally_draws(heads[:10], trials[:10], counts[:10])  # imports and caches outside the trace
    tracemalloc.start()
    try:
        table = tally_draws(heads, trials, counts)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < n_draws
    assert table.n_draws == counts.sum()


@pytest.mark.parametrize("seed", range(3))
def test_chunked_tally_matches_a_counter(small_chunks, seed):
    heads, trials, counts = draws(4 * CHUNK + seed * 123, seed=seed)
    assert as_dict(tally_draws(heads, trials, counts)) == reference(heads, trials, counts)
    assert as_dict(tally_draws(heads, trials)) == reference(heads, trials)
    # Pairs ordered by (trials, heads), whatever the order of the draws.
    table = tally_draws(heads[::-1], trials[::-1], counts[::-1])
    assert np.all(np.diff(table.trials * 1000 + table.heads) > 0)


def test_huge_flip_counts_in_chunks_match_a_counter(small_chunks):
    rng = np.random.RandomState(4)
    trials = rng.choice([3, 10**7, 10**7 + 1], size=3 * CHUNK)
    heads = rng.binomial(trials, 0.5)
    assert as_dict(tally_draws(heads, trials)) == reference(heads, trials)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("heads", -1, r"heads\[2500\] = -1 is negative"),
        ("heads", 99, r"heads\[2500\] = 99 exceeds trials\[2500\] = 10"),
        ("heads", 2.5, r"heads\[2500\] = 2.5 is not an integer count"),
        ("heads", np.nan, r"heads\[2500\] = nan is not an integer count"),
        ("trials", 0, r"trials\[2500\] = 0: a draw needs at least 1 flip"),
        ("trials", np.inf, r"trials\[2500\] = inf is not an integer count"),
        ("counts", -3, r"sample_weight\[2500\] = -3 is negative"),
        ("counts", 1.5, r"sample_weight\[2500\] = 1.5 is not an integer count"),
    ],
)
def test_a_bad_entry_in_a_later_chunk_is_named(small_chunks, field, value, message):
    data = {
        "heads": np.full(3 * CHUNK, 4.0),
        "trials": np.full(3 * CHUNK, 10.0),
        "counts": np.ones(3 * CHUNK),
    }
    data[field][2500] = value
    with pytest.raises(ValueError, match=message):
        tally_draws(data["heads"], data["trials"], data["counts"])
    with pytest.raises(ValueError, match=message):
        BinomialMixture(1).fit(data["heads"], data["trials"], sample_weight=data["counts"])


def test_zero_counts_everywhere_are_no_draws(small_chunks):
    with pytest.raises(ValueError, match="no draws: every sample_weight is 0"):
        tally_draws(np.ones(3 * CHUNK, dtype=int), 5, np.zeros(3 * CHUNK, dtype=int))
