"""The plot's bars and curves against counts worked out by hand."""

from collections import Counter

import numpy as np
import pytest
from scipy.stats import binom

from shared import plotting

# 12 draws of 10 flips: heads 2 (x3), 3 (x2), 7 (x4), 8 (x3).
COUNTS = [[2, 10, 3], [3, 10, 2], [7, 10, 4], [8, 10, 3]]
RESULT = {
    "n_components": 2,
    "bic": None,
    "em": {"thetas": [0.25, 0.75], "weights": [0.4, 0.6], "standard_errors": [0.04, 0.05]},
    "gmm": {"means": [0.24, 0.76], "stds": [0.05, 0.06], "weights": [0.42, 0.58]},
}


def test_one_bar_per_heads_count_when_draws_have_one_length():
    edges, heights = plotting.histogram(COUNTS)
    assert len(heights) == 11
    np.testing.assert_allclose((edges[:-1] + edges[1:]) / 2, np.arange(11) / 10)
    expected = [0, 0, 3, 2, 0, 0, 0, 4, 3, 0, 0]
    assert heights.tolist() == expected


def test_mixed_lengths_use_twenty_bars_on_the_unit_interval():
    counts = [[1, 4, 2], [5, 5, 1], [3, 10, 3], [19, 20, 1]]
    edges, heights = plotting.histogram(counts)
    assert len(heights) == 20 and edges[0] == 0.0 and edges[-1] == 1.0
    # By hand, bars of 0.05: 1/4 -> bar 5 (x2), 3/10 -> bar 6 (x3), 5/5 and 19/20 -> bar 19.
    by_hand = Counter({5: 2, 19: 2, 6: 3})
    assert heights.tolist() == [by_hand.get(i, 0) for i in range(20)]


def test_binomial_curve_is_weighted_pmf_times_draws():
    expected = plotting.binomial_expected(COUNTS, 0.25, 0.4)
    # 12 draws, weight 0.4: 4.8 draws expected in all, split as Binomial(10, 0.25).
    assert expected.sum() == pytest.approx(4.8)
    assert expected[3] == pytest.approx(12 * 0.4 * binom.pmf(3, 10, 0.25))


def test_figure_bars_match_counts_and_legend_names_estimates():
    fig = plotting.figure(COUNTS, RESULT)
    ax = fig.axes[0]
    bars = [p.get_height() for p in ax.patches]
    assert bars == [0, 0, 3, 2, 0, 0, 0, 4, 3, 0, 0]
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "EM coin 2: θ=0.750, weight 0.60" in labels
    assert "GMM 1: μ=0.240, σ=0.050, weight 0.42" in labels
    # The EM mixture line is the sum of both components at each bar.
    mixture = next(line for line in ax.lines if line.get_label() == "EM mixture")
    both = plotting.binomial_expected(COUNTS, 0.25, 0.4) + plotting.binomial_expected(
        COUNTS, 0.75, 0.6
    )
    np.testing.assert_allclose(mixture.get_ydata(), both)


def test_render_png_and_svg():
    png = plotting.render(COUNTS, RESULT, "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    svg = plotting.render(COUNTS, RESULT, "svg")
    assert b"<svg" in svg[:1000]
    assert plotting.render(COUNTS, RESULT, "svg") == svg  # no timestamp inside


def test_render_refuses_other_formats():
    with pytest.raises(ValueError, match="not one of png, svg"):
        plotting.render(COUNTS, RESULT, "gif")


def test_mixed_lengths_binomial_curve_spreads_each_length():
    counts = [[1, 4, 2], [3, 10, 3]]
    expected = plotting.binomial_expected(counts, 0.5, 1.0)
    assert expected.sum() == pytest.approx(5.0)
    # Bar 10 ([0.5, 0.55)) gets k=2 of the 4-flip draws and k=5 of the 10-flip draws.
    assert expected[10] == pytest.approx(2 * binom.pmf(2, 4, 0.5) + 3 * binom.pmf(5, 10, 0.5))


def test_a_second_panel_shows_the_em_trajectory():
    trajectory = {"log_likelihood": [-30.0, -29.2, -29.1], "thetas": [[0.6, 0.5], [0.7, 0.45],
                                                                      [0.8, 0.52]]}
    result = {**RESULT, "em": {**RESULT["em"], "trajectory": trajectory}}
    fig = plotting.figure(COUNTS, result)
    histogram_axes, path = fig.axes
    assert [p.get_height() for p in histogram_axes.patches] == [0, 0, 3, 2, 0, 0, 0, 4, 3, 0, 0]
    lines = {line.get_label(): line for line in path.lines}
    np.testing.assert_allclose(lines["coin 1"].get_ydata(), [0.6, 0.7, 0.8])
    np.testing.assert_allclose(lines["coin 2"].get_xdata(), [1, 2, 3])
    assert "-29.10" in path.get_title()
    assert plotting.render(COUNTS, result, "png").startswith(b"\x89PNG")


BOOTSTRAP = {"replicates": 200, "kind": "parametric", "level": 0.9,
             "thetas": [[0.18, 0.31], [0.69, 0.83]], "weights": [[0.2, 0.6], [0.4, 0.8]],
             "failed": 1, "ambiguous": 2}


def error_bars(ax) -> list:
    """The error-bar containers drawn on ``ax``."""
    from matplotlib.container import ErrorbarContainer

    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_bootstrap_intervals_are_error_bars_across_each_em_theta():
    result = {**RESULT, "em": {**RESULT["em"], "bootstrap": BOOTSTRAP}}
    ax = plotting.figure(COUNTS, result).axes[0]
    (bars,) = error_bars(ax)
    assert bars.get_label() == "EM θ 90% intervals (200 parametric bootstrap)"
    segments = bars.lines[2][0].get_segments()
    # Each spans its coin's interval, at the top of that coin's curve: 12 draws times the
    # weight times the largest Binomial(10, theta) probability.
    peaks = [12 * 0.4 * binom.pmf(2, 10, 0.25), 12 * 0.6 * binom.pmf(8, 10, 0.75)]
    for segment, (lo, hi), peak in zip(segments, BOOTSTRAP["thetas"], peaks, strict=True):
        np.testing.assert_allclose(segment, [[lo, peak], [hi, peak]])
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "EM coin 1: θ=0.250 [0.180, 0.310], weight 0.40 [0.20, 0.60]" in labels


def test_an_interval_beside_its_estimate_and_a_coin_without_one():
    # A percentile interval need not hold the estimate; a coin whose replicates all failed
    # has none.
    boot = {**BOOTSTRAP, "thetas": [[0.26, 0.3], [None, None]],
            "weights": [[0.3, 0.5], [None, None]]}
    result = {**RESULT, "em": {**RESULT["em"], "bootstrap": boot}}
    ax = plotting.figure(COUNTS, result).axes[0]
    (bars,) = error_bars(ax)
    (segment,) = bars.lines[2][0].get_segments()
    np.testing.assert_allclose(segment[:, 0], [0.26, 0.3])
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "EM coin 2: θ=0.750, weight 0.60" in labels


def test_no_error_bars_without_a_bootstrap_or_when_every_replicate_failed():
    assert error_bars(plotting.figure(COUNTS, RESULT).axes[0]) == []
    failed = {**BOOTSTRAP, "thetas": [], "weights": [], "failed": 200}
    ax = plotting.figure(COUNTS, {**RESULT, "em": {**RESULT["em"], "bootstrap": failed}}).axes[0]
    assert error_bars(ax) == []
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "EM coin 1: θ=0.250, weight 0.40" in labels


def test_the_trajectory_ends_at_the_intervals():
    trajectory = {"log_likelihood": [-30.0, -29.2, -29.1], "thetas": [[0.6, 0.5], [0.7, 0.45],
                                                                      [0.25, 0.75]]}
    result = {**RESULT, "em": {**RESULT["em"], "trajectory": trajectory, "bootstrap": BOOTSTRAP}}
    fig = plotting.figure(COUNTS, result)
    _, path = fig.axes
    (bars,) = error_bars(path)
    segments = bars.lines[2][0].get_segments()
    for segment, (lo, hi) in zip(segments, BOOTSTRAP["thetas"], strict=True):
        np.testing.assert_allclose(segment, [[3, lo], [3, hi]])
    assert plotting.render(COUNTS, result, "svg").startswith(b"<?xml")
