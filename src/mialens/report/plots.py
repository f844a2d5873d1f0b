"""Figures of an audit as PNG bytes: log-log ROC, score histograms, per-target spread,
drawn from their numbers (:mod:`mialens.report.figure_data`), never from the scores.

Every figure is a :class:`matplotlib.figure.Figure` drawn on its own Agg canvas, never
through pyplot's global state, so rendering is thread-safe and needs no display.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps
from matplotlib import image as mpl_image
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon

from mialens.report.figure_data import AuditFigures, RocCurves, ScoreHistogram, TargetSpread

_DPI = 100
PNG_COMPRESSION = 3
"""zlib level of the PNG figures: lossless like any level, half the encoding time of the
default 6 for about 6% more bytes."""
MEMBER_COLOR = "#c0392b"
NONMEMBER_COLOR = "#2c7fb8"
_LINESTYLES = ("-", "--", "-.", ":")


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (no timestamp or software metadata: reproducible bytes).

    The figure is drawn once on its canvas (its layout engine lays it out, as on a
    screen) and its pixels encoded as ``savefig`` encodes a PNG; ``savefig`` would first
    lay the figure out in one more, undrawn pass, which changes no pixel of these
    figures and costs a sixth of their time. The PNG is compressed at
    :data:`PNG_COMPRESSION`."""
    fig.set_dpi(_DPI)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    buf = io.BytesIO()
    pixels = canvas.buffer_rgba()
    mpl_image.imsave(
        buf,
        pixels,
        format="png",
        dpi=_DPI,
        metadata={"Software": None},
        pil_kwargs={"compress_level": PNG_COMPRESSION},
    )
    return buf.getvalue()


def _colors(n: int) -> list:
    """One distinct colour per attack, the same in every figure."""
    cmap = "tab10" if n <= 10 else "tab20"
    return [colormaps[cmap](i % colormaps[cmap].N) for i in range(n)]


def _text(label: str) -> str:
    """A label drawn literally: ``$`` would otherwise start matplotlib mathtext."""
    return label.replace("$", r"\$")


def roc_png(roc: RocCurves) -> bytes:
    """Log-log ROC of every attack: its mean TPR over targets on the log FPR grid, a
    step curve through the grid values; the legend holds each attack's label."""
    grid = roc.grid
    fig = Figure(figsize=(6.4, 6.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([grid[0], 1], [grid[0], 1], color="0.6", lw=1, ls=":", label="chance")
    colors = _colors(len(roc.labels))
    for i, (label, tpr, color) in enumerate(zip(roc.labels, roc.tpr, colors, strict=True)):
        ls = _LINESTYLES[(i // 10) % len(_LINESTYLES)]
        ax.plot(grid, tpr, drawstyle="steps-post", color=color, ls=ls, lw=1.6, label=_text(label))
    ax.set_xscale("log")
    ax.set_yscale("log", nonpositive="clip")
    ax.set_xlim(grid[0], 1)
    ax.set_ylim(grid[0], 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (mean over targets)")
    ax.grid(True, which="major", color="0.9", lw=0.8)
    fig.legend(loc="outside lower center", ncols=2, fontsize=7.5, frameon=False)
    return figure_png(fig)


def step_outline(edges: np.ndarray, heights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The perimeter ``(x, y)`` of a step histogram on the baseline 0, the vertices of
    ``ax.hist(..., histtype="step"/"stepfilled")``: up and along each bin, then back
    along the baseline; the first point repeats the last."""
    n = edges.size
    x, y = np.zeros(4 * n - 3), np.zeros(4 * n - 3)
    x[0 : 2 * n - 1 : 2], x[1 : 2 * n - 1 : 2] = edges, edges[:-1]
    x[2 * n - 1 :] = x[1 : 2 * n - 1][::-1]
    y[1 : 2 * n - 1 : 2] = y[2 : 2 * n : 2] = heights
    y[0] = y[-1]
    return x, y


def _draw_histogram(ax, hist: ScoreHistogram) -> None:
    """Each group's bin densities as ``ax.hist`` draws one weighted value per bin with
    ``histtype="stepfilled"`` (alpha 0.35) and then ``"step"`` (labelled): the same
    polygons, properties and data limits, without the per-patch walk of the paths for
    the data limits (they are set once) and the property cycling of ``ax.fill``."""
    outlines = []
    for member, color, label in (
        (False, NONMEMBER_COLOR, "non-members"),
        (True, MEMBER_COLOR, "members"),
    ):
        # the heights as ax.hist bins one weighted value per bin (its sums of the weights
        # may move a density's last digit)
        heights = np.histogram(hist.edges[:-1], hist.edges, weights=hist.density[member])[0]
        x, y = step_outline(hist.edges, heights)
        rgba = to_rgba(color)
        filled = Polygon(np.column_stack((x[:-1], y[:-1])), closed=True, fill=True)
        filled.set(facecolor=rgba, edgecolor=None, alpha=0.35, label=None)
        line = Polygon(np.column_stack((x, y))[: 2 * hist.edges.size], closed=False, fill=False)
        line.set(facecolor=rgba, edgecolor=rgba, zorder=Line2D.zorder, lw=1.1, label=label)
        for patch in (filled, line):
            patch.sticky_edges.y.append(0)
            ax.add_artist(patch)
        outlines.append(np.column_stack((x, y)))
    ax.update_datalim(np.concatenate(outlines))
    ax.autoscale_view()


def histogram_png(histograms: dict[str, ScoreHistogram]) -> bytes:
    """Score histograms per attack, members vs. non-members pooled over targets, one
    panel per attack; a panel with a spike (see
    :func:`~mialens.report.figure_data.score_histogram`) gets a log count axis,
    labelled "log", so the tail is not flattened by the spike."""
    names = list(histograms)
    ncols = min(4, len(names))
    nrows = -(-len(names) // ncols)
    fig = Figure(figsize=(2.5 * ncols + 0.3, 1.9 * nrows + 0.5), layout="constrained")
    grid = fig.add_gridspec(nrows, ncols)
    axes = [fig.add_subplot(grid[i // ncols, i % ncols]) for i in range(len(names))]
    for ax, name in zip(axes, names, strict=True):
        hist = histograms[name]
        _draw_histogram(ax, hist)
        if hist.spike:
            ax.set_yscale("log")
            ax.set_ylabel("log count", fontsize=7)
        ax.set_title(_text(name), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_yticks([], minor=True)
        ax.set_yticks([])
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=2, fontsize=8, frameon=False)
    fig.supxlabel("attack score (higher = more likely member)", fontsize=8)
    return figure_png(fig)


def spread_png(spread: TargetSpread) -> bytes:
    """Per-target TPR at the spread's level of every attack: box plot with the points."""
    level, names, values = spread.level, spread.names, spread.tpr
    fig = Figure(figsize=(max(4.5, 0.65 * len(names) + 1.8), 3.6), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(1, len(names) + 1)
    ax.boxplot(
        values,
        positions=positions,
        widths=0.55,
        showfliers=False,
        medianprops={"color": "0.2"},
        boxprops={"color": "0.45"},
        whiskerprops={"color": "0.45"},
        capprops={"color": "0.45"},
    )
    jitter = np.random.default_rng(0)
    for pos, vals, color in zip(positions, values, _colors(len(names)), strict=True):
        x = pos + jitter.uniform(-0.15, 0.15, size=vals.size)
        ax.scatter(x, vals, s=14, color=color, alpha=0.8, edgecolors="none", zorder=3)
    ax.axhline(level, color="0.6", ls=":", lw=1, label=f"chance (TPR = FPR = {100 * level:g}%)")
    ax.set_xticks(positions, [_text(n) for n in names], rotation=30, ha="right", fontsize=8)
    ax.set_xlim(0.4, len(names) + 0.6)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"TPR at {100 * level:.3g}% FPR, per target", fontsize=9)
    ax.grid(True, axis="y", color="0.9", lw=0.8)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return figure_png(fig)


def audit_pngs(figures: AuditFigures) -> dict[str, bytes]:
    """The audit page's three figures as PNG bytes, by caption name."""
    return {
        "roc": roc_png(figures.roc),
        "histogram": histogram_png(figures.histograms),
        "spread": spread_png(figures.spread),
    }
