"""The numbers the audit page's figures draw: a few hundred values per attack, computed
from the scores once, so the drawing (:mod:`mialens.report.plots`) never sees a score.

:class:`AuditFigures` holds them for the three figures (log-log ROC, score histograms,
per-target spread) and travels as JSON (floats at full precision), which lets another
process draw them (:mod:`mialens.report.figure_worker`). The functions that compute them
import the metrics when called, so the drawing process loads these classes with NumPy
alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mialens.audit.results import AuditResult

LEGEND_FPR = 0.01  # the TPR quoted in the ROC legend and, if resolved, in the spread figure
HIST_PERCENTILES = (0.5, 99.5)  # score range binned by the histograms; the tails are clipped
HIST_LOG_SHARE = 0.3  # a panel whose fullest bin holds more of its scores gets a log count axis
ROC_POINTS = 200  # log-spaced FPR grid points of each ROC curve
HIST_BINS = 40


def min_nonmembers(result: AuditResult) -> int:
    """The smallest number of non-members of any target."""
    return int((~result.members).sum(axis=1).min())


def spread_level(result: AuditResult) -> float:
    """FPR of the spread figure: 1%, or the lowest FPR every target resolves if larger."""
    return float(max(LEGEND_FPR, 1.0 / min_nonmembers(result)))


def reachable(scores: np.ndarray, members: np.ndarray, level: float) -> bool:
    """Whether ties leave FPR ``level`` reachable on every target row (see ``level_ties``)."""
    from mialens.metrics.roc import level_ties, tie_groups

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
    from mialens.metrics.roc import batch_metrics

    scores = result.scores[name]
    summary = batch_metrics(scores, result.members, [level])
    return LevelSummary(
        float(summary["auc"].mean()),
        summary["tpr"][:, 0],
        reachable(scores, result.members, level),
    )


@dataclass(frozen=True)
class RocCurves:
    """The ROC figure: the FPR ``grid`` and, per attack, its legend ``label`` and the
    mean TPR over targets on the grid."""

    grid: np.ndarray
    labels: list[str]
    tpr: list[np.ndarray]


def roc_curves(result: AuditResult, points: int = ROC_POINTS) -> RocCurves:
    """The :class:`RocCurves` of every attack. The legend gives the mean AUC and the
    TPR at :data:`LEGEND_FPR` ("n/a" when no target resolves it) and marks a TPR that
    ties make unreachable on some target."""
    from mialens.metrics.roc import fpr_resolvable, log_fpr_grid, mean_roc

    n_non = min_nonmembers(result)
    grid = log_fpr_grid(n_non, points)
    resolved = fpr_resolvable(n_non, LEGEND_FPR)
    labels, curves = [], []
    for name, scores in result.scores.items():
        summary = level_summary(result, name, LEGEND_FPR)
        at = f"{100 * summary.tpr.mean():.1f}%" if resolved else "n/a"
        if resolved and not summary.reachable:
            at += ", unreachable: ties"
        labels.append(f"{name}  (AUC {summary.auc:.3f}, TPR@1% {at})")
        curves.append(mean_roc(scores, result.members, grid))
    return RocCurves(grid, labels, curves)


@dataclass(frozen=True)
class ScoreHistogram:
    """One attack's pooled score histogram: bin ``edges``, the ``density`` of the
    non-members and of the members in each bin, and whether one bin holds a ``spike``."""

    edges: np.ndarray
    density: dict[bool, np.ndarray]
    spike: bool


def score_histogram(scores: np.ndarray, members: np.ndarray, bins: int) -> ScoreHistogram:
    """The :class:`ScoreHistogram` of one attack's scores, members versus non-members
    pooled over targets: ``bins`` bins over the pooled :data:`HIST_PERCENTILES` range,
    scores outside it clipped into the outermost bins; a ``spike`` when the fullest bin
    holds more than :data:`HIST_LOG_SHARE` of the scores (drawn on a log count axis)."""
    lo, hi = np.percentile(scores, HIST_PERCENTILES)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    clipped = np.clip(scores, lo, hi)
    counts = {m: np.histogram(clipped[members == m], edges)[0] for m in (False, True)}
    return ScoreHistogram(
        edges=edges,
        density={m: c / np.diff(edges) / c.sum() for m, c in counts.items()},  # as np.histogram
        spike=bool((counts[False] + counts[True]).max() > HIST_LOG_SHARE * scores.size),
    )


@dataclass(frozen=True)
class TargetSpread:
    """The spread figure: the FPR ``level`` and, per attack, the TPR of every target."""

    level: float
    names: list[str]
    tpr: list[np.ndarray]


def target_spread(result: AuditResult) -> TargetSpread:
    """The per-target TPRs of every attack at :func:`spread_level`."""
    level = spread_level(result)
    names = list(result.scores)
    return TargetSpread(level, names, [level_summary(result, n, level).tpr for n in names])


@dataclass(frozen=True)
class AuditFigures:
    """The numbers of the audit page's three figures."""

    roc: RocCurves
    histograms: dict[str, ScoreHistogram]
    spread: TargetSpread

    def to_json(self) -> dict:
        """A JSON-ready dict (floats keep full precision through ``json``)."""
        return {
            "roc": {
                "grid": self.roc.grid.tolist(),
                "labels": self.roc.labels,
                "tpr": [t.tolist() for t in self.roc.tpr],
            },
            "histograms": {
                name: {
                    "edges": h.edges.tolist(),
                    "nonmembers": h.density[False].tolist(),
                    "members": h.density[True].tolist(),
                    "spike": h.spike,
                }
                for name, h in self.histograms.items()
            },
            "spread": {
                "level": self.spread.level,
                "names": self.spread.names,
                "tpr": [t.tolist() for t in self.spread.tpr],
            },
        }

    @classmethod
    def from_json(cls, data: dict) -> AuditFigures:
        """The figures that :meth:`to_json` wrote."""
        roc, spread = data["roc"], data["spread"]
        return cls(
            roc=RocCurves(np.asarray(roc["grid"]), roc["labels"], _arrays(roc["tpr"])),
            histograms={
                name: ScoreHistogram(
                    edges=np.asarray(h["edges"]),
                    density={False: np.asarray(h["nonmembers"]), True: np.asarray(h["members"])},
                    spike=h["spike"],
                )
                for name, h in data["histograms"].items()
            },
            spread=TargetSpread(spread["level"], spread["names"], _arrays(spread["tpr"])),
        )


def _arrays(rows: list[list[float]]) -> list[np.ndarray]:
    return [np.asarray(row, dtype=np.float64) for row in rows]


def audit_figures(result: AuditResult) -> AuditFigures:
    """The numbers of the audit page's figures."""
    return AuditFigures(
        roc=roc_curves(result),
        histograms={
            name: score_histogram(scores, result.members, HIST_BINS)
            for name, scores in result.scores.items()
        },
        spread=target_spread(result),
    )
