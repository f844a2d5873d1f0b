"""Figures of an audit as PNG bytes: log-log ROC, score histograms, per-target spread.

Every figure is a :class:`matplotlib.figure.Figure` drawn on its own Agg canvas, never
through pyplot's global state, so rendering is thread-safe and needs no display.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib import image as mpl_image
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon

from mialens.audit.results import AuditResult
from mialens.metrics.roc import (
    batch_metrics,
    fpr_resolvable,
    level_ties,
    log_fpr_grid,
    mean_roc,
    tie_groups,
)

LEGEND_FPR = 0.01  # the TPR quoted in the ROC legend and, if resolved, in the spread figure
HIST_PERCENTILES = (0.5, 99.5)  # score range binned by the histograms; the tails are clipped
HIST_LOG_SHARE = 0.3  # a panel whose fullest bin holds more of its scores gets a log count axis
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


def min_nonmembers(result: AuditResult) -> int:
    """The smallest number of non-members of any target."""
    return int((~result.members).sum(axis=1).min())


def spread_level(result: AuditResult) -> float:
    """FPR of the spread figure: 1%, or the lowest FPR every target resolves if larger."""
    return max(LEGEND_FPR, 1.0 / min_nonmembers(result))


def reachable(scores: np.ndarray, members: np.ndarray, level: float) -> bool:
    """Whether ties leave FPR ``level`` reachable on every target row (see ``level_ties``)."""
    rows = zip(scores, members, strict=True)
    return all(level_ties(*tie_groups(s, m), level).reachable for s, m in rows)


@dataclass(frozen=True)
class LevelSummary:
    """One attack at one FPR level: the mean AUC over targets, the per-target TPRs at
    the level and whether ties leave the level reachable on every target."""

    auc: float
    tpr: np.ndarray
    reachable: bool


def level_summary(result: AuditResult, name: str, level: float) -> LevelSummary:
    """The :class:`LevelSummary` of attack ``name``: read from ``result.metrics`` when it
    holds the level, else computed from the scores."""
    leakage = result.metrics.get(name)
    if leakage is not None and float(level) in leakage.tpr_at_fpr:
        entry = leakage.at(level)
        return LevelSummary(leakage.auc.mean, np.asarray(entry.per_target), entry.reachable)
    scores = result.scores[name]
    summary = batch_metrics(scores, result.members, [level])
    return LevelSummary(
        float(summary["auc"].mean()),
        summary["tpr"][:, 0],
        reachable(scores, result.members, level),
    )


def roc_png(result: AuditResult, points: int = 200) -> bytes:
    """Log-log ROC of every attack: the mean over targets of the TPR on a log FPR grid.

    Each curve is drawn from its ``points`` grid values, never from the scores. The
    legend marks a TPR at 1% FPR that ties make unreachable on some target."""
    n_non = min_nonmembers(result)
    grid = log_fpr_grid(n_non, points)
    resolved = fpr_resolvable(n_non, LEGEND_FPR)
    fig = Figure(figsize=(6.4, 6.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([grid[0], 1], [grid[0], 1], color="0.6", lw=1, ls=":", label="chance")
    for i, (name, color) in enumerate(zip(result.scores, _colors(len(result.scores)), strict=True)):
        tpr = mean_roc(result.scores[name], result.members, grid)
        summary = level_summary(result, name, LEGEND_FPR)
        at = f"{100 * summary.tpr.mean():.1f}%" if resolved else "n/a"
        if resolved and not summary.reachable:
            at += ", unreachable: ties"
        label = f"{_text(name)}  (AUC {summary.auc:.3f}, TPR@1% {at})"
        ls = _LINESTYLES[(i // 10) % len(_LINESTYLES)]
        ax.plot(grid, tpr, drawstyle="steps-post", color=color, ls=ls, lw=1.6, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log", nonpositive="clip")
    ax.set_xlim(grid[0], 1)
    ax.set_ylim(grid[0], 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (mean over targets)")
    ax.grid(True, which="major", color="0.9", lw=0.8)
    fig.legend(loc="outside lower center", ncols=2, fontsize=7.5, frameon=False)
    return figure_png(fig)


@dataclass(frozen=True)
class ScoreHistogram:
    """One attack's pooled score histogram: bin ``edges``, the ``density`` of the
    non-members and of the members in each bin, and whether one bin holds a ``spike``."""

    edges: np.ndarray
    density: dict[bool, np.ndarray]
    spike: bool


def score_histogram(scores: np.ndarray, members: np.ndarray, bins: int) -> ScoreHistogram:
    """The :class:`ScoreHistogram` of one attack's scores (see :func:`histogram_png`)."""
    lo, hi = np.percentile(scores, HIST_PERCENTILES)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    clipped = np.clip(scores, lo, hi)
    counts = {m: np.histogram(clipped[members == m], edges)[0] for m in (False, True)}
    return ScoreHistogram(
        edges=edges,
        density={m: c / np.diff(edges) / c.sum() for m, c in counts.items()},  # as np.histogram
        spike=(counts[False] + counts[True]).max() > HIST_LOG_SHARE * scores.size,
    )


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


def histogram_png(result: AuditResult, bins: int = 40) -> bytes:
    """Score histograms per attack, members vs. non-members pooled over targets.

    Each panel bins its scores over their pooled 0.5–99.5 percentile range; scores
    outside it are clipped into the outermost bins. A panel whose fullest bin holds more
    than :data:`HIST_LOG_SHARE` of the scores (a spike with a long tail) gets a log
    count axis, labelled "log", so the tail is not flattened by the spike. The panels
    are drawn from the bin densities (:func:`score_histogram`), never from the scores.
    """
    names = list(result.scores)
    ncols = min(4, len(names))
    nrows = -(-len(names) // ncols)
    fig = Figure(figsize=(2.5 * ncols + 0.3, 1.9 * nrows + 0.5), layout="constrained")
    grid = fig.add_gridspec(nrows, ncols)
    axes = [fig.add_subplot(grid[i // ncols, i % ncols]) for i in range(len(names))]
    for ax, name in zip(axes, names, strict=True):
        hist = score_histogram(result.scores[name], result.members, bins)
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


def spread_png(result: AuditResult) -> bytes:
    """Per-target TPR at :func:`spread_level` of every attack: box plot with the points."""
    level = spread_level(result)
    names = list(result.scores)
    values = [level_summary(result, n, level).tpr for n in names]
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
