"""Leakage metrics: ROC, AUC, advantage, TPR at low FPR, and confidence intervals."""

from __future__ import annotations

from mialens.metrics.intervals import bootstrap_ci, summarize
from mialens.metrics.leakage import AttackLeakage, LevelResult, Spread, fpr_key, leakage_summary
from mialens.metrics.roc import (
    AttackMetrics,
    LevelTies,
    advantage,
    attack_metrics,
    auc,
    batch_metrics,
    fpr_resolvable,
    level_ties,
    log_fpr_grid,
    mean_roc,
    roc_curve,
    tie_groups,
    tpr_at_fpr,
)

__all__ = [
    "AttackLeakage",
    "AttackMetrics",
    "LevelResult",
    "LevelTies",
    "Spread",
    "advantage",
    "attack_metrics",
    "auc",
    "batch_metrics",
    "bootstrap_ci",
    "fpr_key",
    "fpr_resolvable",
    "leakage_summary",
    "level_ties",
    "log_fpr_grid",
    "mean_roc",
    "roc_curve",
    "summarize",
    "tie_groups",
    "tpr_at_fpr",
]
