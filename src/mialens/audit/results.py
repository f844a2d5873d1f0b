"""The result of an audit: per-sample scores, leakage metrics, utility and provenance."""

from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

from mialens.attacks.base import Attack
from mialens.errors import DataError
from mialens.metrics.intervals import summarize
from mialens.metrics.leakage import (
    METRIC_KEYS,
    AttackLeakage,
    Spread,
    add_bootstrap,
    fpr_key,
    point_leakage,
)

UNREACHABLE_MARK = "†"
UNREACHABLE_NOTE = "tie group straddles this FPR; see report"
WIDENED_MARK = "‡"
WIDENED_NOTE = "interval widened by the threshold's position (few false positives); see report"
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
        "references": attack.needs.references,
        "uses_population": attack.needs.population,
        "params": attack.params.model_dump(),
        "queries_per_sample": queries_per_sample,
    }
    if extra:
        info["extra"] = extra
    return info


@dataclass(repr=False)
class AuditResult:
    """Scores of every attack on every target, with metrics and provenance.

    ``scores[name]`` and ``members`` are ``(T, N)``: row ``t`` is target model
    ``target_models[t]``, column ``n`` the sample with id ``sample_ids[n]``.
    ``metrics[name]`` holds the attack's AUC, advantage and TPR at each FPR
    (:class:`~mialens.metrics.leakage.AttackLeakage`; ``metrics[name].at(0.01).mean``);
    :meth:`headline`, :meth:`summary` and :meth:`to_frame` give them as rows,
    :meth:`to_json` and :meth:`from_json` are the content of metrics.json. ``skipped``
    names the default attacks the data could not serve, with why; ``blind_baseline``
    is a text audit's distribution-shift gate (:mod:`mialens.audit.text_gate`) and
    ``secret_canaries`` its inserted canaries' brief
    (:func:`mialens.audit.text_canaries.canary_brief`; the whole in canaries.json).
    """

    sample_ids: np.ndarray
    labels: np.ndarray
    members: np.ndarray
    target_models: list[int]
    scores: dict[str, np.ndarray]
    attacks: dict[str, dict[str, Any]]
    fpr_levels: list[float]
    metrics: dict[str, AttackLeakage] = field(default_factory=dict)
    utility: dict[str, Any] = field(default_factory=dict)
    design: dict[str, Any] = field(default_factory=dict)
    training: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=environment)
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    skipped: dict[str, str] = field(default_factory=dict)
    blind_baseline: dict[str, Any] | None = None
    secret_canaries: dict[str, Any] | None = None

    def __repr__(self) -> str:
        aucs = ", ".join(
            f"{name} {self.metrics[name].auc.mean:.3f}" if name in self.metrics else name
            for name in self.scores
        )
        skipped = f"; skipped {', '.join(self.skipped)}" if self.skipped else ""
        return (
            f"AuditResult({len(self.sample_ids)} samples, {len(self.target_models)} "
            f"target(s); AUC: {aucs or 'no attacks'}{skipped}; FPR levels "
            f"{', '.join(fpr_key(v) for v in self.fpr_levels)})"
        )

    def compute_metrics(self, n_boot: int, seed: int) -> None:
        """Fill :attr:`metrics` from the scores (bootstrap with ``n_boot`` replicates):
        :meth:`compute_point_metrics`, then :meth:`add_intervals`."""
        self.compute_point_metrics()
        self.add_intervals(n_boot, seed)

    def compute_point_metrics(self) -> None:
        """Fill :attr:`metrics` from the scores, without bootstrap intervals."""
        self.metrics = {
            name: point_leakage(s, self.members, self.fpr_levels) for name, s in self.scores.items()
        }

    def add_intervals(self, n_boot: int, seed: int) -> None:
        """Give :attr:`metrics` their bootstrap intervals (none when ``n_boot`` is 0)."""
        if not n_boot:
            return
        for name, scores in self.scores.items():
            add_bootstrap(self.metrics[name], scores, self.members, self.fpr_levels, n_boot, seed)

    def set_utility(
        self, train_accuracy: list[float], test_accuracy: list[float], test_source: str
    ) -> None:
        """Record each target's accuracy on its members and on unseen test samples."""
        gap = [tr - te for tr, te in zip(train_accuracy, test_accuracy, strict=True)]
        self.utility = {
            "train_accuracy": {
                **summarize(train_accuracy, bounds=(0.0, 1.0)),
                "per_target": train_accuracy,
            },
            "test_accuracy": {
                **summarize(test_accuracy, bounds=(0.0, 1.0)),
                "per_target": test_accuracy,
            },
            "generalization_gap": {**summarize(gap, bounds=(-1.0, 1.0)), "per_target": gap},
            "test_source": test_source,
        }

    def headline(self) -> list[dict[str, Any]]:
        """One row per attack: ``{"attack", "auc", "advantage", "tpr@<fpr>" ...}``.

        Values are means over the targets. A TPR that is no TPR at its FPR level is None:
        at an FPR below ``1 / non-members`` of some target (unresolved), or where a tie
        group straddles the level on some target (unreachable: the ROC offers no threshold
        near the level, see :func:`mialens.metrics.roc.level_ties`). The number, its
        intervals and per-target values stay in ``metrics[name].tpr_at_fpr``.
        """
        rows = []
        for name, m in self.metrics.items():
            row = {"attack": name, "auc": m.auc.mean, "advantage": m.advantage.mean}
            for lv in self.fpr_levels:
                entry = m.at(lv)
                row[f"tpr@{fpr_key(lv)}"] = entry.mean if entry.valid else None
            rows.append(row)
        return rows

    def _rows(self) -> list[dict[str, Any]]:
        """Per attack: AUC and TPR at each FPR as ``(mean, low, high, resolved, reachable,
        widened)``, ``widened`` for a bootstrap interval that carries the threshold's
        position (:mod:`mialens.metrics.threshold_position`)."""
        rows = []
        for name, m in self.metrics.items():
            auc = (*_with_interval(m.auc), True, True, False)
            row: dict[str, Any] = {"attack": name, "auc": auc}
            for lv in self.fpr_levels:
                entry = m.at(lv)
                row[f"tpr@{fpr_key(lv)}"] = (
                    *_with_interval(entry),
                    entry.resolved,
                    entry.reachable,
                    entry.interval_widened,
                )
            rows.append(row)
        return rows

    def summary(self) -> str:
        """A plain-text table: one row per attack, its AUC and TPR at each FPR, each with
        its 95% interval (bootstrap over samples, else Student-t over targets; none with a
        single target and no bootstrap). An unresolved TPR (FPR below ``1 / non-members``)
        is shown as ``unresolved``; an unreachable one (a tie group straddles the level)
        is marked ``†``, a bootstrap interval widened by the threshold's position (few
        false positives allowed) ``‡``, each explained in a footnote."""
        rows = self._rows()
        header = ["attack", "AUC", *(f"TPR@{fpr_key(lv)}" for lv in self.fpr_levels)]
        cells = [
            [row["attack"], *(_cell(*value) for key, value in row.items() if key != "attack")]
            for row in rows
        ]
        widths = [max(len(c) for c in col) for col in zip(header, *cells, strict=True)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                 for line in (header, *cells)]  # fmt: skip
        lines.insert(1, "  ".join("-" * w for w in widths))
        for mark, note in ((UNREACHABLE_MARK, UNREACHABLE_NOTE), (WIDENED_MARK, WIDENED_NOTE)):
            if any(mark in c for line in cells for c in line[1:]):
                lines.append(f"{mark} {note}")
        if self.skipped:
            lines.append(f"skipped: {'; '.join(f'{k} {v}' for k, v in self.skipped.items())}")
        return "\n".join(lines)

    def to_frame(self) -> Any:
        """The :meth:`summary` table as a pandas DataFrame indexed by attack: columns
        ``auc``, ``auc_low``, ``auc_high`` and ``tpr@<fpr>`` (NaN when unresolved or
        unreachable, as in :meth:`headline`) with ``_low``/``_high`` (NaN without an
        interval). Needs pandas."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "AuditResult.to_frame() needs pandas (pip install pandas); "
                "AuditResult.summary() and headline() need nothing"
            ) from None
        records = []
        for row in self._rows():
            record: dict[str, Any] = {"attack": row["attack"]}
            for key, (mean, low, high, resolved, reachable, _) in list(row.items())[1:]:
                nan = float("nan")
                valid = resolved and reachable
                record[key] = mean if valid else nan
                record[f"{key}_low"] = low if valid and low is not None else nan
                record[f"{key}_high"] = high if valid and high is not None else nan
            records.append(record)
        return pd.DataFrame.from_records(records, index="attack")

    def to_json(self) -> dict[str, Any]:
        """Everything except the per-sample arrays: the content of ``metrics.json``."""
        return {
            "created": self.created,
            "config": self.config,
            "design": self.design,
            "utility": self.utility,
            "attacks": {
                name: {
                    **self.attacks[name],
                    **(m.to_json() if (m := self.metrics.get(name)) else {}),
                }
                for name in self.scores
            },
            "fpr_levels": [fpr_key(v) for v in self.fpr_levels],
            "training": self.training,
            "environment": self.environment,
            **({"skipped_attacks": self.skipped} if self.skipped else {}),
            **({"blind_baseline": self.blind_baseline} if self.blind_baseline else {}),
            **({"canaries": self.secret_canaries} if self.secret_canaries else {}),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], samples: dict[str, np.ndarray]) -> AuditResult:
        """The result of a ``metrics.json`` document and its ``samples.csv`` columns
        (:func:`~mialens.report.tables.read_samples`)."""
        targets = list(dict.fromkeys(samples["target"].tolist()))
        if not targets:
            raise DataError("samples.csv has no rows")
        rows = [samples["target"] == t for t in targets]
        ids = samples["sample_id"][rows[0]]
        if any(not np.array_equal(samples["sample_id"][r], ids) for r in rows):
            raise DataError("samples.csv: the targets do not list the same samples in one order")
        attacks = doc["attacks"]
        labels = samples["label"][rows[0]]
        return cls(
            sample_ids=ids,
            labels=_class_indices(labels, doc.get("design", {}).get("label_values")),
            members=np.stack([samples["member"][r].astype(bool) for r in rows]),
            target_models=targets,
            scores={name: np.stack([samples[name][r] for r in rows]) for name in attacks},
            attacks={
                n: {k: v for k, v in a.items() if k not in METRIC_KEYS} for n, a in attacks.items()
            },
            fpr_levels=[float(v) for v in doc["fpr_levels"]],
            metrics={n: AttackLeakage.from_json(a) for n, a in attacks.items() if "auc" in a},
            utility=doc.get("utility", {}),
            design=doc.get("design", {}),
            training=doc.get("training", []),
            config=doc["config"],
            environment=doc.get("environment", {}),
            created=doc.get("created", ""),
            skipped=doc.get("skipped_attacks", {}),
            blind_baseline=doc.get("blind_baseline"),
            secret_canaries=doc.get("canaries"),
        )


def _class_indices(labels: np.ndarray, values: list[str] | None) -> np.ndarray:
    """The class index of each label of samples.csv (original labels mapped back)."""
    if values is None:
        return labels.astype(np.int64)
    index = {v: c for c, v in enumerate(values)}
    return np.array([index[str(v)] for v in labels.tolist()], dtype=np.int64)


def _with_interval(entry: Spread) -> tuple[float, float | None, float | None]:
    """``(mean, low, high)``: the bootstrap interval, else the t interval over targets."""
    low, high = entry.interval() or (None, None)
    return entry.mean, low, high


def _cell(
    mean: float,
    low: float | None,
    high: float | None,
    resolved: bool,
    reachable: bool,
    widened: bool,
) -> str:
    if not resolved:
        return "unresolved"
    mark = "" if reachable else UNREACHABLE_MARK
    if low is None:
        return f"{mean:.3f}{mark}"
    return f"{mean:.3f}{mark} [{low:.3f}, {high:.3f}]{WIDENED_MARK if widened else ''}"
