"""A study's settings and what it concludes: the same audit and analysis under a grid of
training recipes.

The grid of "Membership Inference Attacks Beyond Overfitting" (Khalil et al. 2025):
train the same architecture without regularisation, with early stopping, L2 at several
strengths, L2 with dropout, label smoothing and DP-SGD, and ask in each setting how much
membership leaks, which samples leak, and whether they are intra-class outliers. A
study file holds one base audit configuration and the settings as overrides of it::

    name: beyond_overfitting_location30
    base: {dataset: {name: location30}, audit: {num_models: 16}, analysis: {}}
    settings:
      - {name: original}
      - {name: l2_1e-3, set: {train.weight_decay: 0.001}}

:func:`~mialens.workflows.study.run_study` audits every setting into
``OUT/settings/<name>/`` (models are cached, so a rerun is quick); :func:`study_row` and
:func:`summarize_study` make ``OUT/study.json`` of them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from mialens.analysis.outliers import GROUPS, MEMBERSHIP_DEPENDENT, measure_group
from mialens.analysis.summary import AnalysisSummary
from mialens.audit.results import AuditResult
from mialens.metrics.leakage import fpr_key


class StudySetting(BaseModel):
    """One training recipe: a name and overrides (dotted keys) of the base configuration."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", description="folder-safe name")
    description: str | None = None
    set: dict[str, Any] = Field(default_factory=dict, description="KEY: VALUE overrides")


class StudyConfig(BaseModel):
    """A study file: a base audit configuration and the settings to compare."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str | None = None
    attack: str | None = Field(
        default=None,
        description="attack of the table and of vulnerability in every setting (default: "
        "analysis.attack of the base, else the first of lira_online, rmia_online, "
        "lira_offline, rmia_offline in the audit, else its first attack)",
    )
    base: dict[str, Any]
    settings: list[StudySetting] = Field(min_length=1)


def override_text(values: dict[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]  # JSON is YAML


def study_row(
    setting: StudySetting, result: AuditResult, summary: AnalysisSummary, attack: str
) -> dict[str, Any]:
    """What study.json records about one setting. ``groups`` is the analysis headline: per
    group of measures (geometric outlierness, model-output difficulty, memorisation) the
    one with the highest AUC for the primary vulnerable set, with its interval; ``link``
    (one best measure of any group, often the circular ``out_neg_margin``) is kept for
    scripts that read it."""
    m = result.metrics[attack]
    eps = [r["epsilon"] for r in result.training if r.get("epsilon") is not None]
    epochs = [r["epochs_run"] for r in result.training if r.get("epochs_run") is not None]
    return {
        "name": setting.name,
        "description": setting.description,
        "overrides": ", ".join(override_text(setting.set)) or "(base)",
        "train_acc": result.utility["train_accuracy"]["mean"],
        "test_acc": result.utility["test_accuracy"]["mean"],
        "generalization_gap": result.utility["generalization_gap"]["mean"],
        "auc": m.auc.mean,
        "advantage": m.advantage.mean,
        "tpr_at_fpr": m.levels_json(lambda e: e.mean),
        "tpr_resolved": m.levels_json(lambda e: e.resolved),
        "tpr_reachable": m.levels_json(lambda e: e.reachable),
        "epsilon": float(np.mean(eps)) if eps else None,
        "epochs_run": float(np.mean(epochs)) if epochs else None,
        "vulnerable": {fpr_key(lv): r.vulnerable for lv, r in summary.vulnerability.levels.items()},
        "mean_vulnerability": summary.vulnerability.mean,
        "link": summary.link,
        "primary_set": summary.primary_set,
        "groups": summary.headline.groups,
        "intra_class_outliers_supported": summary.headline.intra_class_outliers_supported,
        "measures": _measures(summary.statistics, summary.primary_set),
        "canaries": summary.canaries,
        "attacks": {
            name: {
                "auc": a.auc.mean,
                "advantage": a.advantage.mean,
                "tpr_at_fpr": a.levels_json(lambda e: e.mean),
            }
            for name, a in result.metrics.items()
        },
    }


def _measures(stats: dict[str, Any], primary: str) -> dict[str, dict[str, Any]]:
    """Per measure: its Spearman and within-class correlation with vulnerability, and its
    AUC for the primary vulnerable set."""
    measures = {}
    for name, corr in stats["spearman"].items():
        entry = stats["sets"].get(primary, {}).get("measures", {}).get(name, {})
        measures[name] = {
            "rho": corr["rho"],
            "ci_low": corr["ci_low"],
            "ci_high": corr["ci_high"],
            "p_holm": corr.get("p_holm"),
            "within_class_rho": stats["within_class"][name]["rho"],
            "within_class_p_holm": stats["within_class"][name].get("p_holm"),
            "auc": entry.get("auc"),
        }
    return measures


def _holds(entry: dict[str, Any]) -> bool:
    rho, p = entry.get("within_class_rho"), entry.get("within_class_p_holm")
    return rho is not None and p is not None and rho > 0 and p < 0.05


def summarize_study(rows: list[dict[str, Any]], levels: list[str]) -> dict[str, Any]:
    """Orderings of the settings, the measures compared across them, and whether the link
    holds in the settings with the smallest generalisation gap.

    ``geometric_measure`` is the geometric outlierness measure (input or feature space)
    with the highest mean AUC over the settings, the headline's criterion, and the same
    measure in every setting; ``gap_vs_link`` is the Spearman correlation over settings of
    the generalisation gap with that measure's Spearman ρ with vulnerability. A model-output
    measure would be circular there (``out_neg_margin`` is the OUT models' margin that
    LiRA scores). ``common_measure`` (the best mean within-class ρ of any group) is kept."""
    common, geometric = _compared_measures(rows)
    for row in rows:
        row["common"] = row["measures"].get(common) if common else None
        row["geometric"] = row["measures"].get(geometric) if geometric else None
    resolved = [k for k in levels if all(r["tpr_resolved"].get(k) for r in rows)]
    level = min(resolved, key=float) if resolved else levels[0]
    gaps = np.array([r["generalization_gap"] for r in rows])
    small = [r for r in rows if r["generalization_gap"] <= np.median(gaps)]
    out: dict[str, Any] = {
        "figure_level": level,
        "group_names": GROUPS,
        "common_measure": common,
        "geometric_measure": geometric,
        "intra_class_outliers_supported": [
            r["name"] for r in rows if r["intra_class_outliers_supported"]
        ],
        "ordering": {
            f"tpr_at_fpr_{level}": [
                r["name"] for r in sorted(rows, key=lambda r: -r["tpr_at_fpr"][level])
            ],
            "test_acc": [r["name"] for r in sorted(rows, key=lambda r: -r["test_acc"])],
            "generalization_gap": [
                r["name"] for r in sorted(rows, key=lambda r: r["generalization_gap"])
            ],
        },
        "small_gap": {
            "threshold": float(np.median(gaps)),
            "settings": [r["name"] for r in small],
            "link_holds": {r["name"]: _holds(r["common"] or {}) for r in small},
            "intra_class_outliers_supported": {
                r["name"]: r["intra_class_outliers_supported"] for r in small
            },
        },
    }
    trend = _gap_vs_link(rows, geometric)
    if trend is not None:
        out["gap_vs_link"] = trend
    return out


def _compared_measures(rows: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """The measure of any group with the best mean within-class ρ over the settings, and
    the geometric measure with the best mean AUC (None if no setting has one)."""
    names = set.intersection(*(set(r["measures"]) for r in rows)) - set(MEMBERSHIP_DEPENDENT)
    mean_within = {
        n: np.mean([r["measures"][n]["within_class_rho"] or 0.0 for r in rows]) for n in names
    }
    common = max(sorted(mean_within), key=mean_within.get) if mean_within else None
    mean_auc = {
        n: np.mean([r["measures"][n]["auc"] or 0.0 for r in rows])
        for n in names
        if measure_group(n) == "geometric"
    }
    geometric = max(sorted(mean_auc), key=mean_auc.get) if mean_auc else None
    return common, geometric


def _gap_vs_link(rows: list[dict[str, Any]], geometric: str | None) -> dict[str, Any] | None:
    """The Spearman correlation over settings of the generalisation gap with the geometric
    measure's ρ (None with fewer than four settings or no spread of the gap)."""
    pairs = [
        (r["generalization_gap"], r["geometric"]["rho"])
        for r in rows
        if r["geometric"] and r["geometric"]["rho"] is not None
    ]
    if len(pairs) < 4 or np.ptp([g for g, _ in pairs]) <= 0:
        return None
    rho, p = stats.spearmanr(*zip(*pairs, strict=True))
    return {
        "measure": geometric,
        "group": "geometric",
        "rho": float(rho),
        "p": float(p),
        "settings": len(pairs),
    }


def study_findings(study: dict[str, Any]) -> list[str]:
    rows = study["settings"]
    level = study["figure_level"]
    order = study["ordering"][f"tpr_at_fpr_{level}"]
    lines = [
        f"Leakage ({study['attack']}, TPR at {100 * float(level):g}% FPR) from most to least: "
        + ", ".join(order)
        + "."
    ]
    for group, title in study["group_names"].items():
        best = [f"{r['name']} {_auc_text(r['groups'].get(group))}" for r in rows]
        lines.append(f"Best {title} measure per setting (AUC [95% CI]): {'; '.join(best)}.")
    supported = study["intra_class_outliers_supported"]
    lines.append(
        f"The geometric group supports the intra-class-outlier claim (best AUC's interval "
        f"above 0.5 and within-class ρ > 0, Holm p < 0.05) in {len(supported)} of {len(rows)} "
        f"settings{': ' + ', '.join(supported) if supported else ''}."
    )
    small = study["small_gap"]
    held = [n for n, ok in small["intra_class_outliers_supported"].items() if ok]
    lines.append(
        f"Settings with a generalisation gap at most the median ({small['threshold']:.3f}): "
        f"{', '.join(small['settings'])}; the claim is supported in {len(held)} of them."
    )
    trend = study.get("gap_vs_link")
    if trend:
        lines.append(
            f"Link versus generalisation gap, with the best geometric measure "
            f"{trend['measure']} (highest mean AUC over settings): Spearman ρ "
            f"{trend['rho']:.2f} (p {trend['p']:.2g}) over {trend['settings']} settings."
        )
    return lines


def _auc_text(entry: dict[str, Any] | None) -> str:
    """``"input_knn 0.61 [0.55, 0.67]"``, or ``"n/a"`` for a group without a measure."""
    if not entry:
        return "n/a"
    return (
        f"{entry['measure']} {_fmt(entry, 'auc')} [{_fmt(entry, 'ci_low')}, "
        f"{_fmt(entry, 'ci_high')}]"
    )


def _fmt(entry: dict[str, Any] | None, key: str) -> str:
    value = (entry or {}).get(key)
    return "n/a" if value is None else f"{value:.2f}"
