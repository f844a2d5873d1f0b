"""The leakage summary of one attack over all its targets, as written to metrics.json.

:func:`leakage_summary` returns an :class:`AttackLeakage`: the AUC and advantage as
:class:`Spread` (values over targets with their intervals) and the TPR at each FPR level
as :class:`LevelResult`, keyed by the level as a float (``leakage.at(0.01).mean``). Only
``to_json``/``from_json`` name a level by its string key (:func:`fpr_key`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mialens.metrics.intervals import bootstrap_ci, summarize
from mialens.metrics.roc import (
    LevelTies,
    allowed_false_positives,
    attack_metrics,
    fpr_resolvable,
)
from mialens.metrics.threshold_position import MIN_FALSE_POSITIVES_FOR_INTERVAL


def fpr_key(level: float) -> str:
    """The JSON key of a false-positive rate: ``0.001 -> "0.001"``."""
    return repr(float(level))


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval of the mean over targets."""

    low: float
    high: float

    def to_json(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Interval:
        return cls(low=doc["low"], high=doc["high"])


@dataclass(kw_only=True)
class Spread:
    """A metric over T targets: mean, ``std`` (ddof=1), ``min``, ``max``, ``n``, the
    Student-t interval ``ci_low``/``ci_high`` (:func:`~mialens.metrics.intervals.summarize`),
    the ``per_target`` values and the ``bootstrap`` interval of the mean (if computed)."""

    mean: float
    std: float
    min: float
    max: float
    n: int
    ci_low: float
    ci_high: float
    per_target: list[float]
    bootstrap: Interval | None = None

    @classmethod
    def of(cls, values: list[float], **extra: Any) -> Spread:
        """The spread of a rate in [0, 1] over targets (``extra``: a subclass's fields),
        without a bootstrap interval (:func:`add_bootstrap` gives it)."""
        return cls(
            **summarize(values, bounds=(0.0, 1.0)), per_target=[float(v) for v in values], **extra
        )

    def interval(self) -> tuple[float, float] | None:
        """The bootstrap interval, else the t interval over targets (none with one target)."""
        if self.bootstrap is not None:
            return self.bootstrap.low, self.bootstrap.high
        if self.n > 1:
            return self.ci_low, self.ci_high
        return None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "n": self.n,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "per_target": list(self.per_target),
        }
        if self.bootstrap is not None:
            doc["bootstrap"] = self.bootstrap.to_json()
        return doc

    @classmethod
    def _fields_from(cls, doc: dict[str, Any]) -> dict[str, Any]:
        keys = ("mean", "std", "min", "max", "n", "ci_low", "ci_high", "per_target")
        boot = doc.get("bootstrap")
        return {
            **{k: doc[k] for k in keys},
            "bootstrap": None if boot is None else Interval.from_json(boot),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Spread:
        return cls(**cls._fields_from(doc))


@dataclass(frozen=True)
class TargetTies:
    """Per target, how a tie group meets one FPR level (:class:`~mialens.metrics.roc.LevelTies`)."""

    reachable: list[bool]
    achieved_fpr: list[float]
    next_fpr: list[float | None]
    group_share: list[float]

    @classmethod
    def of(cls, ties: list[LevelTies]) -> TargetTies:
        return cls(
            reachable=[t.reachable for t in ties],
            achieved_fpr=[t.achieved_fpr for t in ties],
            next_fpr=[t.next_fpr for t in ties],
            group_share=[t.group_share for t in ties],
        )

    def unreachable(self) -> list[int]:
        """The targets on which ties make the level unreachable."""
        return [t for t, ok in enumerate(self.reachable) if not ok]

    def to_json(self) -> dict[str, list]:
        return {
            "reachable": list(self.reachable),
            "achieved_fpr": list(self.achieved_fpr),
            "next_fpr": list(self.next_fpr),
            "group_share": list(self.group_share),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TargetTies:
        return cls(**{k: list(doc[k]) for k in ("reachable", "achieved_fpr", "next_fpr",
                                                 "group_share")})  # fmt: skip


@dataclass(kw_only=True)
class LevelResult(Spread):
    """The TPR at one FPR level over targets. ``resolved``: the level is at least
    ``1 / non-members`` on every target (else the TPR is the TPR at FPR 0). The tie guard
    (:func:`~mialens.metrics.roc.level_ties`): ``reachable`` unless a tie group makes the
    level unreachable on some target (``unreachable_targets`` of them), with the
    per-target ``ties``; a metrics.json older than the guard has no ``ties`` and loads as
    reachable. ``allowed_false_positives``: the fewest non-members a threshold at the
    level may accept on any target (None in older files)."""

    resolved: bool
    reachable: bool = True
    unreachable_targets: int = 0
    ties: TargetTies | None = None
    allowed_false_positives: int | None = None

    @property
    def valid(self) -> bool:
        """Whether the value is a TPR at its level: resolved and reachable."""
        return self.resolved and self.reachable

    def unreachable(self) -> list[int]:
        """The targets on which ties make the level unreachable (none for older files)."""
        return [] if self.ties is None else self.ties.unreachable()

    @property
    def interval_widened(self) -> bool:
        """Whether the level has a bootstrap interval and allows so few false positives
        that the interval carries the threshold's position too
        (:mod:`mialens.metrics.threshold_position`, conservative)."""
        allowed = self.allowed_false_positives
        return (
            self.bootstrap is not None
            and allowed is not None
            and allowed < MIN_FALSE_POSITIVES_FOR_INTERVAL
        )

    def to_json(self) -> dict[str, Any]:
        doc = {**super().to_json(), "resolved": self.resolved}
        if self.ties is not None:
            doc["reachable"] = self.reachable
            doc["unreachable_targets"] = self.unreachable_targets
            doc["ties"] = self.ties.to_json()
        if self.allowed_false_positives is not None:
            doc["allowed_false_positives"] = self.allowed_false_positives
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LevelResult:
        ties = doc.get("ties")
        return cls(
            **cls._fields_from(doc),
            resolved=doc["resolved"],
            reachable=doc.get("reachable", True),
            unreachable_targets=doc.get("unreachable_targets", 0),
            ties=None if ties is None else TargetTies.from_json(ties),
            allowed_false_positives=doc.get("allowed_false_positives"),
        )


@dataclass(frozen=True)
class TieShare:
    """The largest tie group's share of each target's scores, and its maximum."""

    max: float
    per_target: list[float]

    def to_json(self) -> dict[str, Any]:
        return {"max": self.max, "per_target": list(self.per_target)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TieShare:
        return cls(max=doc["max"], per_target=list(doc["per_target"]))


@dataclass(frozen=True)
class PooledLevel:
    """The TPR of the pooled canary ROC at one FPR level, and whether it is resolved."""

    value: float
    resolved: bool


@dataclass(frozen=True)
class CaughtShares:
    """The share of IN canaries and of the other IN samples a target's threshold accepts."""

    canaries: float
    natural: float


@dataclass
class CanaryLeakage:
    """An attack's leakage on the canaries (:func:`mialens.audit.canaries.canary_metrics`):
    the canary-only ROC pooled over targets (``auc``, ``n_members``, ``n_nonmembers``,
    ``tpr_at_fpr``) and the ``global_threshold`` shares, both keyed by FPR level."""

    count: int
    auc: float
    n_members: int
    n_nonmembers: int
    tpr_at_fpr: dict[float, PooledLevel]
    global_threshold: dict[float, CaughtShares]

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "pooled": {
                "auc": self.auc,
                "n_members": self.n_members,
                "n_nonmembers": self.n_nonmembers,
                "tpr_at_fpr": {
                    fpr_key(lv): {"value": p.value, "resolved": p.resolved}
                    for lv, p in self.tpr_at_fpr.items()
                },
            },
            "global_threshold": {
                fpr_key(lv): {"canaries": c.canaries, "natural": c.natural}
                for lv, c in self.global_threshold.items()
            },
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CanaryLeakage:
        pooled = doc["pooled"]
        return cls(
            count=doc["count"],
            auc=pooled["auc"],
            n_members=pooled["n_members"],
            n_nonmembers=pooled["n_nonmembers"],
            tpr_at_fpr={float(k): PooledLevel(**v) for k, v in pooled["tpr_at_fpr"].items()},
            global_threshold={
                float(k): CaughtShares(**v) for k, v in doc["global_threshold"].items()
            },
        )


@dataclass
class AttackLeakage:
    """One attack's leakage over its targets: ``auc``, ``advantage``, the TPR at each FPR
    level (``tpr_at_fpr[0.01]`` or :meth:`at`), the ``tie_share``, the number of
    ``bootstrap_replicates`` used (None without bootstrap) and, with canaries, its
    ``canaries`` leakage. ``tie_share`` is None in a metrics.json older than the tie guard."""

    auc: Spread
    advantage: Spread
    tpr_at_fpr: dict[float, LevelResult]
    tie_share: TieShare | None = None
    bootstrap_replicates: int | None = None
    canaries: CanaryLeakage | None = None

    def at(self, level: float) -> LevelResult:
        """The TPR at FPR ``level``."""
        return self.tpr_at_fpr[float(level)]

    def levels_json(self, value: Callable[[LevelResult], Any]) -> dict[str, Any]:
        """``value`` of each level's result keyed as in the JSON files: ``{"0.01": ...}``."""
        return {fpr_key(lv): value(e) for lv, e in self.tpr_at_fpr.items()}

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "auc": self.auc.to_json(),
            "advantage": self.advantage.to_json(),
            "tpr_at_fpr": self.levels_json(LevelResult.to_json),
        }
        if self.tie_share is not None:
            doc["tie_share"] = self.tie_share.to_json()
        if self.bootstrap_replicates is not None:
            doc["bootstrap_replicates"] = self.bootstrap_replicates
        if self.canaries is not None:
            doc["canaries"] = self.canaries.to_json()
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> AttackLeakage:
        """The metrics of one attack entry of metrics.json (other keys are ignored)."""
        ties, canaries = doc.get("tie_share"), doc.get("canaries")
        return cls(
            auc=Spread.from_json(doc["auc"]),
            advantage=Spread.from_json(doc["advantage"]),
            tpr_at_fpr={float(k): LevelResult.from_json(v) for k, v in doc["tpr_at_fpr"].items()},
            tie_share=None if ties is None else TieShare.from_json(ties),
            bootstrap_replicates=doc.get("bootstrap_replicates"),
            canaries=None if canaries is None else CanaryLeakage.from_json(canaries),
        )


METRIC_KEYS = ("auc", "advantage", "tpr_at_fpr", "tie_share", "bootstrap_replicates", "canaries")
"""The keys of an attack entry of metrics.json that :class:`AttackLeakage` holds."""


def _level(per_target: list, level: float) -> LevelResult:
    """The TPR at one level over targets, with its tie guard (reachable only if on every
    target)."""
    ties = [m.ties[level] for m in per_target]
    unreachable = sum(not t.reachable for t in ties)
    return LevelResult.of(
        [m.tpr_at_fpr[level] for m in per_target],
        resolved=all(fpr_resolvable(m.n_nonmembers, level) for m in per_target),
        reachable=unreachable == 0,
        unreachable_targets=unreachable,
        ties=TargetTies.of(ties),
        allowed_false_positives=min(
            allowed_false_positives(m.n_nonmembers, level) for m in per_target
        ),
    )


def leakage_summary(
    scores: np.ndarray,
    members: np.ndarray,
    fpr_levels: list[float],
    n_boot: int = 200,
    seed: int = 0,
) -> AttackLeakage:
    """AUC, advantage and TPR at each FPR for ``T`` targets, with their intervals.

    ``scores`` and ``members`` are ``(T, N)``. Each metric reports the per-target values,
    their mean, spread and Student-t interval over targets, and (if ``n_boot > 0``) a
    bootstrap interval of the mean over resampled samples. A TPR at an FPR below
    ``1 / n_nonmembers`` of some target is flagged ``resolved: false``: it is then the
    TPR at FPR 0. ``allowed_false_positives`` gives each level's fewest false positives
    allowed on a target; below
    :data:`~mialens.metrics.threshold_position.MIN_FALSE_POSITIVES_FOR_INTERVAL` its
    bootstrap interval is widened by the threshold's position (``interval_widened``).

    The tie guard (:func:`mialens.metrics.roc.level_ties`): a level is ``reachable:
    false`` when a tie group makes it unreachable on any target; ``unreachable_targets``
    counts those targets and ``ties`` lists, per target, ``reachable``, the
    ``achieved_fpr`` the TPR is read at, the ``next_fpr`` past the level and the
    straddling tie group's ``group_share`` of the scores. ``tie_share`` gives the
    largest tie group's share of each target's scores and its maximum over targets.

    The same as :func:`point_leakage` followed by :func:`add_bootstrap`.
    """
    leakage = point_leakage(scores, members, fpr_levels)
    if n_boot:
        add_bootstrap(leakage, scores, members, fpr_levels, n_boot, seed)
    return leakage


def point_leakage(
    scores: np.ndarray, members: np.ndarray, fpr_levels: list[float]
) -> AttackLeakage:
    """:func:`leakage_summary` without the bootstrap intervals."""
    per_target = [attack_metrics(s, m, fpr_levels) for s, m in zip(scores, members, strict=True)]
    return AttackLeakage(
        auc=Spread.of([m.auc for m in per_target]),
        advantage=Spread.of([m.advantage for m in per_target]),
        tpr_at_fpr={float(lv): _level(per_target, lv) for lv in fpr_levels},
        tie_share=TieShare(
            max=max(m.tie_share for m in per_target),
            per_target=[m.tie_share for m in per_target],
        ),
    )


def add_bootstrap(
    leakage: AttackLeakage,
    scores: np.ndarray,
    members: np.ndarray,
    fpr_levels: list[float],
    n_boot: int,
    seed: int,
) -> None:
    """Give the metrics of :func:`point_leakage` (of these scores) their bootstrap
    intervals of ``n_boot`` replicates (:func:`~mialens.metrics.intervals.bootstrap_ci`)."""
    boot = bootstrap_ci(scores, members, fpr_levels, n_boot=n_boot, seed=seed)
    leakage.auc.bootstrap = Interval(**boot["auc"])
    leakage.advantage.bootstrap = Interval(**boot["advantage"])
    for lv in fpr_levels:
        leakage.tpr_at_fpr[float(lv)].bootstrap = Interval(**boot["tpr_at_fpr"][float(lv)])
    leakage.bootstrap_replicates = boot["n_boot"]
