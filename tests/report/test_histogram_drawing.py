"""The score histogram's panels are the polygons and limits of ``ax.hist``
(mialens.report.plots._draw_histogram)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from mialens.report import figure_data, plots


def _hist(spike: bool) -> figure_data.ScoreHistogram:
    gen = np.random.default_rng(5)
    members = gen.permutation(np.arange(300) < 150)
    scores = gen.normal(size=300) + members
    if spike:
        scores[gen.permutation(300)[:200]] = 0.25  # most scores in one bin
    return figure_data.score_histogram(scores, members, bins=12)


def _by_hist(hist: figure_data.ScoreHistogram):
    ax = Figure().add_subplot()
    for member, color, label in (
        (False, plots.NONMEMBER_COLOR, "non-members"),
        (True, plots.MEMBER_COLOR, "members"),
    ):
        bars = (hist.edges[:-1], hist.edges)
        weights = hist.density[member]
        ax.hist(*bars, weights=weights, histtype="stepfilled", alpha=0.35, color=color)
        ax.hist(*bars, weights=weights, histtype="step", lw=1.1, color=color, label=label)
    return ax


def _drawn(hist: figure_data.ScoreHistogram):
    ax = Figure().add_subplot()
    plots._draw_histogram(ax, hist)
    return ax


_PROPS = (
    *("facecolor", "edgecolor", "linewidth", "linestyle", "alpha", "zorder", "fill", "label"),
    *("closed", "antialiased", "hatch", "capstyle", "joinstyle", "clip_on"),
)


@pytest.mark.parametrize("log", [False, True])
def test_panel_draws_the_patches_and_limits_of_ax_hist(log):
    hist = _hist(spike=log)
    assert hist.spike == log
    expected, drawn = _by_hist(hist), _drawn(hist)
    for ax in (expected, drawn):
        if log:
            ax.set_yscale("log")
    assert len(drawn.patches) == len(expected.patches) == 4
    for want, got in zip(expected.patches, drawn.patches, strict=True):
        np.testing.assert_array_equal(got.get_xy(), want.get_xy())
        for prop in _PROPS:
            assert getattr(got, f"get_{prop}")() == getattr(want, f"get_{prop}")(), prop
        assert got.sticky_edges.y == want.sticky_edges.y
    np.testing.assert_array_equal(drawn.dataLim.get_points(), expected.dataLim.get_points())
    assert drawn.get_xlim() == expected.get_xlim()
    assert drawn.get_ylim() == expected.get_ylim()
    assert drawn.get_legend_handles_labels()[1] == expected.get_legend_handles_labels()[1]


def test_step_outline_runs_up_each_bin_and_back_along_the_baseline():
    x, y = plots.step_outline(np.array([0.0, 1.0, 3.0]), np.array([2.0, 5.0]))
    np.testing.assert_array_equal(x, [0, 0, 1, 1, 3, 3, 1, 1, 0])
    np.testing.assert_array_equal(y, [0, 2, 2, 5, 5, 0, 0, 0, 0])


def test_figure_png_is_the_canvas_pixels_at_the_set_compression():
    import io

    from PIL import Image

    fig = Figure(figsize=(2, 1.5))
    fig.add_subplot().plot([0, 1], [1, 0])
    data = plots.figure_png(fig)
    pixels = np.asarray(fig.canvas.buffer_rgba())  # the canvas figure_png drew
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)
    assert b"Software" not in data  # no version stamp: reproducible bytes
    zlib_flags = data[data.index(b"IDAT") + 5]  # the image data's zlib header, 2nd byte
    assert zlib_flags >> 6 == 1  # FLEVEL 1: a fast level (2 to 5), not the default 6
