"""The result of an audit: per-sample scores, leakage metrics, utility and provenance."""

from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

from mialens.attacks.base import Attack
from mialens.metrics.intervals import summarize
from mialens.metrics.leakage import fpr_key, leakage_summary

_PACKAGES = ("mialens", "torch", "numpy", "scipy", "scikit-learn", "opacus", "pydantic")


def environment() -> dict[str, str]:
    """Versions of Python and the packages that determine the numbers."""
    env = {"python": platform.python_version(), "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            env[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            env[name] = "not installed"
    return env


def attack_info(
    attack: Attack, queries_per_sample: float, extra: list[dict] | None = None
) -> dict[str, Any]:
    """What the report says about an attack: paper, threat model, parameters, the number
    of target queries it made per audited sample, and its diagnostics per target."""
    info = {
        "summary": attack.summary,
        "paper": attack.paper,
        "threat_model": attack.threat_model,
        "references": attack.references,
        "uses_population": attack.uses_population,
        "params": attack.params.model_dump(),
        "queries_per_sample": queries_per_sample,
    }
    if extra:
        info["extra"] = extra
    return info


@dataclass
class AuditResult:
    """Scores of every attack on every target, with metrics and provenance.

    ``scores[name]`` and ``members`` are ``(T, N)``: row ``t`` is target model
    ``target_models[t]``, column ``n`` the sample with id ``sample_ids[n]``.
    """

    sample_ids: np.ndarray
    labels: np.ndarray
    members: np.ndarray
    target_models: list[int]
    scores: dict[str, np.ndarray]
    attacks: dict[str, dict[str, Any]]
    fpr_levels: list[float]
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    utility: dict[str, Any] = field(default_factory=dict)
    design: dict[str, Any] = field(default_factory=dict)
    training: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=environment)
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )

    def compute_metrics(self, n_boot: int, seed: int) -> None:
        """Fill :attr:`metrics` from the scores (bootstrap with ``n_boot`` replicates)."""
        self.metrics = {
            name: leakage_summary(s, self.members, self.fpr_levels, n_boot=n_boot, seed=seed)
            for name, s in self.scores.items()
        }

    def set_utility(
        self, train_accuracy: list[float], test_accuracy: list[float], test_source: str
    ) -> None:
        """Record each target's accuracy on its members and on unseen test samples."""
        gap = [tr - te for tr, te in zip(train_accuracy, test_accuracy, strict=True)]
        self.utility = {
            "train_accuracy": {**summarize(train_accuracy), "per_target": train_accuracy},
            "test_accuracy": {**summarize(test_accuracy), "per_target": test_accuracy},
            "generalization_gap": {**summarize(gap), "per_target": gap},
            "test_source": test_source,
        }

    def headline(self) -> list[dict[str, Any]]:
        """One row per attack: mean AUC, advantage and TPR at each FPR (None if unresolved)."""
        rows = []
        for name, m in self.metrics.items():
            row = {"attack": name, "auc": m["auc"]["mean"], "advantage": m["advantage"]["mean"]}
            for lv in self.fpr_levels:
                entry = m["tpr_at_fpr"][fpr_key(lv)]
                row[f"tpr@{fpr_key(lv)}"] = entry["mean"] if entry["resolved"] else None
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Everything except the per-sample arrays: the content of ``metrics.json``."""
        return {
            "created": self.created,
            "config": self.config,
            "design": self.design,
            "utility": self.utility,
            "attacks": {
                name: {**self.attacks[name], **self.metrics.get(name, {})} for name in self.scores
            },
            "fpr_levels": [fpr_key(v) for v in self.fpr_levels],
            "training": self.training,
            "environment": self.environment,
        }
