"""The leakage summary of one attack over all its targets, as written to metrics.json."""

from __future__ import annotations

from typing import Any

import numpy as np

from mialens.metrics.intervals import bootstrap_ci, summarize
from mialens.metrics.roc import LevelTies, attack_metrics, fpr_resolvable


def fpr_key(level: float) -> str:
    """The JSON key of a false-positive rate: ``0.001 -> "0.001"``."""
    return repr(float(level))


def _tie_entry(ties: list[LevelTies]) -> dict[str, Any]:
    """The tie guard of one FPR level over targets (reachable only if on every target)."""
    unreachable = sum(not t.reachable for t in ties)
    return {
        "reachable": unreachable == 0,
        "unreachable_targets": unreachable,
        "ties": {
            "reachable": [t.reachable for t in ties],
            "achieved_fpr": [t.achieved_fpr for t in ties],
            "next_fpr": [t.next_fpr for t in ties],
            "group_share": [t.group_share for t in ties],
        },
    }


def leakage_summary(
    scores: np.ndarray,
    members: np.ndarray,
    fpr_levels: list[float],
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """AUC, advantage and TPR at each FPR for ``T`` targets, with their intervals.

    ``scores`` and ``members`` are ``(T, N)``. Each metric reports the per-target values,
    their mean, spread and Student-t interval over targets, and (if ``n_boot > 0``) a
    bootstrap interval of the mean over resampled samples. A TPR at an FPR below
    ``1 / n_nonmembers`` of some target is flagged ``resolved: false``: it is then the
    TPR at FPR 0.

    The tie guard (:func:`mialens.metrics.roc.level_ties`): a level is ``reachable:
    false`` when a tie group makes it unreachable on any target; ``unreachable_targets``
    counts those targets and ``ties`` lists, per target, ``reachable``, the
    ``achieved_fpr`` the TPR is read at, the ``next_fpr`` past the level and the
    straddling tie group's ``group_share`` of the scores. ``tie_share`` gives the
    largest tie group's share of each target's scores and its maximum over targets.
    """
    per_target = [attack_metrics(s, m, fpr_levels) for s, m in zip(scores, members, strict=True)]
    boot = bootstrap_ci(scores, members, fpr_levels, n_boot=n_boot, seed=seed) if n_boot else None

    def block(values: list[float], interval: dict[str, float] | None) -> dict[str, Any]:
        out: dict[str, Any] = summarize(values, bounds=(0.0, 1.0))
        out["per_target"] = [float(v) for v in values]
        if interval is not None:
            out["bootstrap"] = interval
        return out

    result: dict[str, Any] = {
        "auc": block([m.auc for m in per_target], boot["auc"] if boot else None),
        "advantage": block([m.advantage for m in per_target], boot["advantage"] if boot else None),
        "tpr_at_fpr": {},
        "tie_share": {
            "max": max(m.tie_share for m in per_target),
            "per_target": [m.tie_share for m in per_target],
        },
    }
    for level in fpr_levels:
        entry = block(
            [m.tpr_at_fpr[level] for m in per_target],
            boot["tpr_at_fpr"][float(level)] if boot else None,
        )
        entry["resolved"] = all(fpr_resolvable(m.n_nonmembers, level) for m in per_target)
        entry.update(_tie_entry([m.ties[level] for m in per_target]))
        result["tpr_at_fpr"][fpr_key(level)] = entry
    if boot:
        result["bootstrap_replicates"] = boot["n_boot"]
    return result
