"""A finished job as a picture: the heads fractions' histogram with each method's fit over it.

Pure: counts and result in, image bytes out. Drawn on a bare ``Figure`` with the Agg
canvas, so nothing touches pyplot's global state and threads can draw at once.

The cost is bounded whatever the data: at most 61 bars (one per heads count of draws of one
length up to 60 flips, else 20 bars of the heads fraction); each binomial curve costs one
CDF per bar edge per distinct flip count, independent of the flip counts themselves, and
past 1,000 distinct flip counts, counts within 1.5% of each other share one curve
(:func:`flip_lengths`). A plot of 100,000 rows of distinct counts near 10^6 flips with 10
components renders in well under 2 seconds.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy.stats import binom, norm  # noqa: E402

FORMATS = ("png", "svg")
# Draws of one length up to this many flips get one bar per possible heads count.
_MAX_EXACT_FLIPS = 60
_DEFAULT_BINS = 20
# Up to this many distinct flip counts, each gets its own binomial curve; past it, counts
# within _LENGTH_RATIO of each other share one, at their draw-weighted mean. Below 67 flips
# every count stays alone; above, the fraction's spread changes by under 1% in a group.
_MAX_EXACT_LENGTHS = 1000
_LENGTH_RATIO = 1.015


def _rows(counts: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """``[heads, flips, count]`` rows as one int64 array (free when they already are)."""
    return np.asarray(counts, dtype=np.int64).reshape(-1, 3)


def _single_length(counts: Sequence[Sequence[int]] | np.ndarray) -> int | None:
    lengths = np.unique(_rows(counts)[:, 1])
    if len(lengths) == 1 and (n := int(lengths[0])) <= _MAX_EXACT_FLIPS:
        return n
    return None


def bin_edges(counts: Sequence[Sequence[int]]) -> np.ndarray:
    """Histogram edges on the heads fraction: one bar per k/n when every draw has n flips."""
    n = _single_length(counts)
    if n is not None:
        return (np.arange(n + 2) - 0.5) / n
    return np.linspace(0.0, 1.0, _DEFAULT_BINS + 1)


def _bar(heads: np.ndarray, flips: np.ndarray, exact: int | None) -> np.ndarray:
    # Integer arithmetic: a fraction such as 3/10 on a bar's edge must not fall either way.
    if exact is not None:
        return heads
    return np.minimum(heads * _DEFAULT_BINS // flips, _DEFAULT_BINS - 1)


def histogram(counts: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """``(edges, draws per bar)`` of the heads fraction of ``[heads, flips, count]`` rows.

    Bars are closed on the left and open on the right, except the last, which holds 1.
    """
    edges = bin_edges(counts)
    rows = _rows(counts)
    bars = _bar(rows[:, 0], rows[:, 1], _single_length(counts))
    heights = np.bincount(bars, weights=rows[:, 2], minlength=len(edges) - 1).astype(float)
    return edges, heights


def flip_lengths(counts: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """``(flip counts, draws of each)``, grouped past :data:`_MAX_EXACT_LENGTHS` distinct counts.

    Grouped, a flip count stands for every count within 1.5% of it: their number is then
    at most log(max flips) / log(1.015), about 930 for a million flips, whatever the rows.
    """
    rows = _rows(counts)
    lengths, where = np.unique(rows[:, 1], return_inverse=True)
    draws = np.bincount(where, weights=rows[:, 2], minlength=len(lengths))
    if len(lengths) <= _MAX_EXACT_LENGTHS:
        return lengths, draws
    group = np.floor(np.log(lengths) / np.log(_LENGTH_RATIO)).astype(np.int64)
    _, at = np.unique(group, return_inverse=True)
    total = np.bincount(at, weights=draws)
    plain = np.bincount(at, weights=lengths) / np.bincount(at)
    weighted = np.bincount(at, weights=draws * lengths) / np.where(total > 0, total, 1)
    mean = np.where(total > 0, weighted, plain)
    return np.rint(mean).astype(np.int64), total


def binomial_expected(
    counts: Sequence[Sequence[int]], theta: float, weight: float
) -> np.ndarray:
    """Draws per bar that one binomial component predicts, given the draws' lengths."""
    exact = _single_length(counts)
    lengths, draws = flip_lengths(counts)
    if exact is not None:
        k = np.arange(exact + 1)
        return draws.sum() * weight * binom.pmf(k, exact, theta)
    # Bar b holds the heads counts k with b <= bins * k / n < b + 1 (the last also k = n):
    # from ceil(b * n / bins) on, so each bar is a difference of two CDF values.
    n = lengths[:, None]
    first = -(-(np.arange(_DEFAULT_BINS + 1)[None, :] * n) // _DEFAULT_BINS)
    first[:, -1] = lengths + 1
    per_bar = np.clip(np.diff(binom.cdf(first - 1, n, theta), axis=1), 0.0, None)
    return weight * (draws @ per_bar)


def _interval_text(intervals: Sequence[Sequence[float | None]], i: int, digits: int) -> str:
    # No intervals at all when every replicate failed.
    if i >= len(intervals) or None in intervals[i]:
        return ""
    low, high = intervals[i]
    return f" [{low:.{digits}f}, {high:.{digits}f}]"


def intervals(em: dict[str, Any]) -> list[tuple[int, float, float]]:
    """``(coin, low, high)`` of each EM theta's bootstrap interval; none without a bootstrap."""
    boot = em.get("bootstrap")
    if not boot:
        return []
    return [(i, lo, hi) for i, (lo, hi) in enumerate(boot["thetas"])
            if lo is not None and hi is not None]


def _interval_label(em: dict[str, Any]) -> str:
    boot = em["bootstrap"]
    level = f"{boot['level'] * 100:g}%"
    return f"EM θ {level} intervals ({boot['replicates']} {boot['kind']} bootstrap)"


def _draw_em(ax, counts, edges, em: dict[str, Any]) -> None:
    centres = (edges[:-1] + edges[1:]) / 2
    total = np.zeros(len(centres))
    boot = em.get("bootstrap")
    peaks = []
    for i, (theta, weight) in enumerate(zip(em["thetas"], em["weights"], strict=True)):
        expected = binomial_expected(counts, theta, weight)
        total += expected
        peaks.append(float(expected.max(initial=0.0)))
        theta_interval = _interval_text(boot["thetas"], i, 3) if boot else ""
        weight_interval = _interval_text(boot["weights"], i, 2) if boot else ""
        ax.plot(
            centres, expected, "o--", color=f"C{i + 1}", markersize=3, linewidth=1,
            label=f"EM coin {i + 1}: θ={theta:.3f}{theta_interval}, "
                  f"weight {weight:.2f}{weight_interval}",
        )
    ax.plot(centres, total, "-", color="black", linewidth=1.5, label="EM mixture")
    bars = intervals(em)
    if bars:
        # Each theta's interval spans the heads fractions, so it lies across the x axis, at
        # the height of its coin's curve; drawn about the interval's middle, since a
        # percentile interval need not hold the estimate itself.
        coins = [i for i, _, _ in bars]
        low = np.array([lo for _, lo, _ in bars])
        high = np.array([hi for _, _, hi in bars])
        ax.errorbar(
            (low + high) / 2, [peaks[i] for i in coins], xerr=(high - low) / 2, fmt="none",
            ecolor="black", elinewidth=1.5, capsize=4, label=_interval_label(em), zorder=3,
        )


def _draw_gmm(ax, counts, edges, gmm: dict[str, Any]) -> None:
    draws = float(_rows(counts)[:, 2].sum())
    width = float(np.mean(np.diff(edges)))
    x = np.linspace(edges[0], edges[-1], 400)
    parts = zip(gmm["means"], gmm["stds"], gmm["weights"], strict=True)
    for i, (mean, std, weight) in enumerate(parts):
        if std is None or not std > 0:
            continue
        # A density times draws times bar width is in draws per bar, like the bars.
        ax.plot(
            x, draws * width * weight * norm.pdf(x, mean, std), ":", color=f"C{i + 1}",
            linewidth=1.5, label=f"GMM {i + 1}: μ={mean:.3f}, σ={std:.3f}, weight {weight:.2f}",
        )


def figure(counts: Sequence[Sequence[int]], result: dict[str, Any]) -> Figure:
    """The job's figure: bars of draws per heads fraction, EM and GMM fits drawn over them."""
    counts = _rows(counts)  # once: every curve reads the same rows
    edges, heights = histogram(counts)
    fig = Figure(figsize=(10.5, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    trajectory = (result.get("em") or {}).get("trajectory")
    if trajectory and trajectory["thetas"]:
        # A second panel: how the best EM run got there (the paper's Figure 1b).
        ax, path = fig.subplots(1, 2, width_ratios=[3, 2])
        _draw_trajectory(path, trajectory, result["em"])
    else:
        ax = fig.add_subplot()
    ax.bar(
        edges[:-1], heights, width=np.diff(edges), align="edge", color="#c8d6e5",
        edgecolor="#576574", linewidth=0.6, label=f"draws ({int(heights.sum())})",
    )
    if result.get("em"):
        _draw_em(ax, counts, edges, result["em"])
    if result.get("gmm"):
        _draw_gmm(ax, counts, edges, result["gmm"])
    ax.set_xlim(min(edges[0], 0.0), max(edges[-1], 1.0))
    ax.set_xlabel("heads fraction per draw")
    ax.set_ylabel("draws")
    ax.set_title(f"{int(heights.sum())} draws, {result.get('n_components', '?')} coins")
    if len(fig.axes) > 1:
        ax.legend(fontsize="x-small", loc="upper left", frameon=False)
    else:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _draw_trajectory(ax, trajectory: dict[str, Any], em: dict[str, Any]) -> None:
    """Each coin's theta after each iteration of the best run, and its log-likelihood;
    the bootstrap intervals, if any, where the run ends."""
    thetas = np.asarray(trajectory["thetas"], dtype=float)
    steps = np.arange(1, len(thetas) + 1)
    for k in range(thetas.shape[1]):
        ax.plot(steps, thetas[:, k], marker="o", markersize=2.5, linewidth=1.2,
                label=f"coin {k + 1}")
    bars = intervals(em)
    if bars:
        low = np.array([lo for _, lo, _ in bars])
        high = np.array([hi for _, _, hi in bars])
        ax.errorbar(
            np.full(len(bars), float(len(steps))), (low + high) / 2, yerr=(high - low) / 2,
            fmt="none", ecolor="black", elinewidth=1.5, capsize=4,
            label=f"{em['bootstrap']['level'] * 100:g}% intervals", zorder=3,
        )
    ax.set_xlabel("EM iteration (best run)")
    ax.set_ylabel("θ")
    ax.set_ylim(0.0, 1.0)
    last = trajectory["log_likelihood"][-1]
    ax.set_title(f"trajectory: log-likelihood {last:.2f}", fontsize="medium")
    ax.legend(fontsize="small", loc="best", frameon=False)


def render(counts: Sequence[Sequence[int]], result: dict[str, Any], fmt: str = "png") -> bytes:
    """The figure as PNG or SVG bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"plot format {fmt!r} is not one of {', '.join(FORMATS)}")
    buffer = io.BytesIO()
    # No timestamp in the file: the same job draws the same bytes.
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    # A fixed salt makes SVG ids repeatable too.
    with matplotlib.rc_context({"svg.hashsalt": "emcoins"}):
        figure(counts, result).savefig(buffer, format=fmt, metadata=metadata)
    return buffer.getvalue()
