"""Leakage metrics: ROC, AUC, advantage, TPR at low FPR, and confidence intervals."""

from __future__ import annotations

from mialens.metrics.intervals import bootstrap_ci, summarize
from mialens.metrics.leakage import fpr_key, leakage_summary
from mialens.metrics.roc import (
    AttackMetrics,
    advantage,
    attack_metrics,
    auc,
    batch_metrics,
    fpr_resolvable,
    log_fpr_grid,
    mean_roc,
    roc_curve,
    tpr_at_fpr,
)

__all__ = [
    "AttackMetrics",
    "advantage",
    "attack_metrics",
    "auc",
    "batch_metrics",
    "bootstrap_ci",
    "fpr_key",
    "fpr_resolvable",
    "leakage_summary",
    "log_fpr_grid",
    "mean_roc",
    "roc_curve",
    "summarize",
    "tpr_at_fpr",
]
