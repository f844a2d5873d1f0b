"""The analysis summary (``analysis/summary.json``): what the leakage analysis of one
audit concludes, typed where code reads it.

:func:`summarize_analysis` assembles it from the analysis' parts; :class:`AnalysisSummary`
holds it, with ``to_json``/``from_json`` for the file. FPR levels of the leakage and the
vulnerable levels are floats (``summary.leakage.tpr_at_fpr[0.01]``,
``summary.vulnerability.levels[0.01].vulnerable``); the vulnerable sets keep their names
(``"0.01"``, ``"top"``), which key the statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from mialens.analysis.outliers import GROUPS, measure_group
from mialens.analysis.settings import AnalysisSettings
from mialens.analysis.significance import auc_test
from mialens.analysis.vulnerability import CHANCE_VULNERABILITY, Vulnerability
from mialens.audit.results import AuditResult
from mialens.metrics.leakage import fpr_key

TOP_SAMPLES = 25  # most vulnerable samples listed in summary.json and the report


def json_safe(obj: Any) -> Any:
    """``obj`` with numpy scalars as Python numbers and every non-finite float as None
    (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


@dataclass(frozen=True)
class Leakage:
    """The chosen attack's mean AUC, advantage and TPR at each FPR level over targets."""

    auc: float
    advantage: float
    tpr_at_fpr: dict[float, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "auc": self.auc,
            "advantage": self.advantage,
            "tpr_at_fpr": {fpr_key(lv): v for lv, v in self.tpr_at_fpr.items()},
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Leakage:
        return cls(
            auc=doc["auc"],
            advantage=doc["advantage"],
            tpr_at_fpr={float(k): v for k, v in doc["tpr_at_fpr"].items()},
        )


@dataclass(frozen=True)
class VulnerableLevel:
    """The samples vulnerable at one detection FPR (:mod:`mialens.analysis.vulnerability`)."""

    vulnerable: int
    flagged_at_least_once: int
    expected_flagged_by_chance: float
    mean_tpr: float
    resolved: bool


@dataclass
class VulnerabilitySummary:
    """The distribution of per-sample vulnerability: its ``chance`` level, mean and
    quantiles, the vulnerable samples per detection FPR ``levels``, the ``top`` set, the
    conformal ``floor``/``ceiling`` and the fitted ``tail`` that ranks beyond it."""

    chance: float
    mean: float
    quantiles: dict[str, float]
    mean_out_control: float
    above_chance: int
    levels: dict[float, VulnerableLevel]
    top: dict[str, Any]
    at_ceiling: int
    ties_at_max: int
    floor: float
    ceiling: float
    tail: dict[str, Any]
    separation_median: float

    def to_json(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["levels"] = {fpr_key(lv): asdict(r) for lv, r in self.levels.items()}
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> VulnerabilitySummary:
        values = {f.name: doc[f.name] for f in fields(cls)}
        values["levels"] = {float(k): VulnerableLevel(**v) for k, v in doc["levels"].items()}
        return cls(**values)


@dataclass(frozen=True)
class Headline:
    """Per group of measures, the best one for the ``set`` (None without a measure), and
    whether the geometric group supports the intra-class-outlier claim."""

    set: str
    groups: dict[str, dict[str, Any] | None]
    intra_class_outliers_supported: bool


@dataclass
class AnalysisSummary:
    """The content of ``analysis/summary.json``; ``statistics`` (and
    ``statistics_without_canaries``, ``per_class``) are the link statistics of
    :func:`~mialens.analysis.significance.link_statistics`, keyed by measure and set
    name; ``epochs`` is None unless the analysis followed the epochs."""

    dataset: str
    attack: str
    attack_choice: str
    design: dict[str, Any]
    utility: dict[str, float]
    leakage: Leakage
    vulnerability: VulnerabilitySummary
    measures: list[str]
    measure_groups: dict[str, str]
    group_names: dict[str, str]
    primary_set: str
    statistics: dict[str, Any]
    statistics_without_canaries: dict[str, Any] | None
    per_class: list[dict[str, Any]]
    canaries: dict[str, Any] | None
    top_samples: list[dict[str, Any]]
    link: dict[str, Any]
    headline: Headline
    epochs: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["leakage"] = self.leakage.to_json()
        doc["vulnerability"] = self.vulnerability.to_json()
        doc["headline"] = asdict(self.headline)
        if self.epochs is None:
            del doc["epochs"]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> AnalysisSummary:
        """The summary of a summary.json document (KeyError if a key is missing, as in
        analyses older than the headline)."""
        values = {f.name: doc[f.name] for f in fields(cls) if f.name != "epochs"}
        values["leakage"] = Leakage.from_json(doc["leakage"])
        values["vulnerability"] = VulnerabilitySummary.from_json(doc["vulnerability"])
        values["headline"] = Headline(**doc["headline"])
        return cls(**values, epochs=doc.get("epochs"))


def canary_summary(
    vuln: Vulnerability,
    canary: np.ndarray,
    sets: dict[str, np.ndarray],
    top_fraction: float,
) -> dict[str, Any]:
    """Where the canaries rank: share in each vulnerable set and in the top ranks."""
    n = canary.size
    pct = vuln.rank[canary] / n
    return {
        "count": int(canary.sum()),
        "share_in_sets": {k: float(mask[canary].mean()) for k, mask in sets.items()},
        "natural_share_in_sets": {k: float(mask[~canary].mean()) for k, mask in sets.items()},
        "share_in_top_1pct": float((vuln.rank[canary] <= math.ceil(0.01 * n)).mean()),
        "median_rank_percentile": float(np.median(pct)),
        "vulnerability_auc": auc_test(vuln.score, canary),
        "vulnerability_tail_auc": auc_test(vuln.tail, canary),
        "top_fraction": top_fraction,
    }


def top_samples(table: dict[str, np.ndarray], count: int) -> list[dict[str, Any]]:
    order = np.argsort(table["rank"])[:count]
    keys = ("sample_id", "rank", "label", "canary", "vulnerability_tail", "vulnerability",
            "vulnerability_low", "vulnerability_high", "separation", "out_disagreement",
            "memorization")  # fmt: skip
    return [{k: table[k][i].item() for k in keys if k in table} for i in order]


def _ties_at_max(values: np.ndarray) -> int:
    return int(np.isclose(values, values.max(), rtol=0, atol=1e-12).sum())


def vulnerability_summary(
    vuln: Vulnerability, keep: np.ndarray, sets: dict[str, np.ndarray]
) -> dict[str, Any]:
    n = vuln.score.size
    n_out = (~keep).sum(axis=1)
    levels = {}
    for lv, r in vuln.levels.items():
        n_in = int(vuln.n_in.min())
        levels[fpr_key(lv)] = {
            "vulnerable": int(r.vulnerable.sum()),
            "flagged_at_least_once": int((r.hits > 0).sum()),
            "expected_flagged_by_chance": float(n * (1 - (1 - lv) ** n_in)),
            "mean_tpr": float(r.tpr.mean()),
            "resolved": r.resolved,
        }
    top = sets["top"]
    return {
        "chance": CHANCE_VULNERABILITY,
        "mean": float(vuln.score.mean()),
        "quantiles": {
            f"q{round(100 * q)}": float(np.quantile(vuln.score, q)) for q in (0.1, 0.5, 0.9, 0.99)
        },
        "mean_out_control": float(vuln.out_control.mean()),
        "above_chance": int((vuln.low > CHANCE_VULNERABILITY).sum()),
        "levels": levels,
        "top": {
            "count": int(top.sum()),
            "threshold": float(vuln.score[top].min()),
            "tail_threshold": float(vuln.tail[top].min()),
        },
        "at_ceiling": int(vuln.at_ceiling.sum()),
        "ties_at_max": _ties_at_max(vuln.score),
        "floor": float(1 / (1 + n_out.min())),
        "ceiling": float(np.log10(1 + n_out.max())),
        "tail": {
            "mean": float(vuln.tail.mean()),
            "max": float(vuln.tail.max()),
            "quantiles": {
                f"q{round(100 * q)}": float(np.quantile(vuln.tail, q)) for q in (0.5, 0.9, 0.99)
            },
            "ties_at_max": _ties_at_max(vuln.tail),
            "beyond_ceiling": int((vuln.tail > np.log10(1 + n_out.max())).sum()),
        },
        "separation_median": float(np.median(vuln.separation)),
    }


def link(stats: dict[str, Any], primary: str) -> dict[str, Any]:
    """The headline: the outlierness measure (memorisation excluded) most correlated with
    vulnerability within classes, and whether that correlation is positive with a
    Holm-adjusted p below 0.05."""
    best = stats["best"]["within_class"] or stats["best"]["spearman"]
    if best is None:
        return {"holds": False, "measure": None}
    corr = stats["spearman"][best]
    within = stats["within_class"][best]
    entry = stats["sets"].get(primary, {}).get("measures", {}).get(best, {})
    holds = (
        within.get("rho") is not None
        and within["rho"] > 0
        and within.get("p_holm") is not None
        and within["p_holm"] < 0.05
    )
    return {
        "holds": bool(holds),
        "measure": best,
        "rho": corr["rho"],
        "ci_low": corr["ci_low"],
        "ci_high": corr["ci_high"],
        "p_holm": corr.get("p_holm"),
        "within_class_rho": within.get("rho"),
        "within_class_p_holm": within.get("p_holm"),
        "set": primary,
        "auc": entry.get("auc"),
        "best_auc_measure": stats["sets"].get(primary, {}).get("best"),
    }


def scored_by_group(
    entries: dict[str, Any], groups: Sequence[str], group_of: Callable[[str], str]
) -> dict[str, dict[str, float]]:
    """Per group, the AUC of each of its measures that has one (for the primary set)."""
    return {
        group: {
            k: e["auc"] for k, e in entries.items() if group_of(k) == group and e["auc"] is not None
        }
        for group in groups
    }


def headline(stats: dict[str, Any], primary: str) -> dict[str, Any]:
    """Per group of measures, the one with the highest AUC for the primary vulnerable set
    (its DeLong interval, Holm p over all measures, within-class rho; the group's lowest
    AUC and number of measures), and whether the
    geometric group supports the intra-class-outlier claim: its best AUC's interval above
    0.5 and its within-class rho positive, both with Holm-adjusted p < 0.05."""
    entries = stats["sets"].get(primary, {}).get("measures", {})
    groups: dict[str, Any] = {}
    for group, scored in scored_by_group(entries, GROUPS, measure_group).items():
        if not scored:
            groups[group] = None
            continue
        best = max(scored, key=scored.get)
        e, within = entries[best], stats["within_class"][best]
        groups[group] = {
            "measure": best,
            "auc": e["auc"],
            "ci_low": e["ci_low"],
            "ci_high": e["ci_high"],
            "p_holm": e.get("p_holm"),
            "within_class_rho": within.get("rho"),
            "within_class_p_holm": within.get("p_holm"),
            "measures": len(scored),
            "auc_min": min(scored.values()),
        }
    geo = groups.get("geometric")
    supported = bool(
        geo is not None
        and geo["ci_low"] > 0.5
        and (geo["p_holm"] is not None and geo["p_holm"] < 0.05)
        and (geo["within_class_rho"] or 0) > 0
        and (geo["within_class_p_holm"] is not None and geo["within_class_p_holm"] < 0.05)
    )
    return {"set": primary, "groups": groups, "intra_class_outliers_supported": supported}


def _design(
    settings: AnalysisSettings, keep: np.ndarray, vuln: Vulnerability, canary: np.ndarray
) -> dict[str, Any]:
    """The design of the analysis: models, pool, IN targets per sample and its settings."""
    return {
        "num_models": int(keep.shape[0]),
        "pool_size": int(keep.shape[1]),
        "in_targets_per_sample": int(vuln.n_in.min()),
        "feature_models": min(settings.feature_models or keep.shape[0], keep.shape[0]),
        "spaces": list(settings.spaces),
        "neighbors": settings.neighbors,
        "iforest_trees": settings.iforest_trees,
        "fdr": settings.fdr,
        "top_fraction": settings.top_fraction,
        "tail_fraction": settings.tail_fraction,
        "canaries": int(canary.sum()),
    }


def summarize_analysis(
    result: AuditResult,
    *,
    attack: str,
    attack_choice: str,
    dataset: str,
    settings: AnalysisSettings,
    vuln: Vulnerability,
    keep: np.ndarray,
    sets: dict[str, np.ndarray],
    measures: dict[str, np.ndarray],
    statistics: tuple[dict[str, Any], dict[str, Any] | None, list[dict[str, Any]]],
    primary: str,
    canary: np.ndarray,
    table: dict[str, np.ndarray],
    epochs: list[dict[str, Any]] | None,
) -> AnalysisSummary:
    """The summary of the analysis of ``result`` by ``attack`` (chosen for the reason
    ``attack_choice``); ``statistics`` are the link statistics, those without the
    canaries and those per class; ``primary`` names the primary vulnerable set."""
    stats, natural_stats, by_class = statistics
    metrics = result.metrics[attack]
    doc = {
        "dataset": dataset,
        "attack": attack,
        "attack_choice": attack_choice,
        "design": _design(settings, keep, vuln, canary),
        "utility": {
            k: result.utility[k]["mean"]
            for k in ("train_accuracy", "test_accuracy", "generalization_gap")
            if k in result.utility
        },
        "leakage": Leakage(
            metrics.auc.mean,
            metrics.advantage.mean,
            {lv: e.mean for lv, e in metrics.tpr_at_fpr.items()},
        ).to_json(),
        "vulnerability": vulnerability_summary(vuln, keep, sets),
        "measures": list(measures),
        "measure_groups": {k: measure_group(k) for k in measures},
        "group_names": GROUPS,
        "primary_set": primary,
        "statistics": stats,
        "statistics_without_canaries": natural_stats,
        "per_class": by_class,
        "canaries": (
            canary_summary(vuln, canary, sets, settings.top_fraction) if canary.any() else None
        ),
        "top_samples": top_samples(table, TOP_SAMPLES),
        "link": link(stats, primary),
        "headline": headline(stats, primary),
    }
    if epochs is not None:
        doc["epochs"] = epochs
    return AnalysisSummary.from_json(json_safe(doc))
