"""A study: the same audit and analysis under a grid of training recipes.

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

``run_study`` audits every setting into ``OUT/settings/<name>/`` (models are cached,
so a rerun is quick) and writes ``OUT/study.json`` and ``OUT/report.html``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy import stats

from mialens.analysis.figures import study_png
from mialens.analysis.outliers import GROUPS, MEMBERSHIP_DEPENDENT, measure_group
from mialens.analysis.run import ANALYSIS_DIR, json_safe
from mialens.audit.config import (
    AuditConfig,
    _format_errors,
    apply_overrides,
    read_yaml,
    validate_config,
)
from mialens.audit.results import AuditResult
from mialens.errors import ConfigError, DataError
from mialens.io import write_json, write_text
from mialens.metrics.leakage import fpr_key
from mialens.report.files import load_result

log = logging.getLogger(__name__)

STUDY_FILE = "study.json"
_PREFERRED_ATTACKS = ("lira_online", "rmia_online", "lira_offline", "rmia_offline")


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


def _override_text(values: dict[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]  # JSON is YAML


def load_study(
    path: str | os.PathLike, overrides: list[str] = (), only: list[str] = ()
) -> tuple[StudyConfig, list[tuple[StudySetting, AuditConfig]]]:
    """Read a study file and validate the configuration of every setting.

    ``overrides`` (``KEY=VALUE``) apply to every setting after its own; ``only`` keeps
    the named settings.
    """
    raw = read_yaml(path, "study") or {}
    try:
        study = StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid study {path}:\n{_format_errors(exc, StudyConfig)}") from None
    names = [s.name for s in study.settings]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"study settings named twice: {', '.join(dup)}")
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise ConfigError(
            f"no study setting named {', '.join(unknown)}; settings: {', '.join(names)}"
        )
    chosen = [s for s in study.settings if not only or s.name in only]
    base = apply_overrides(copy.deepcopy(study.base), list(overrides))
    attack = study.attack or _default_attack(base)
    configs = []
    for setting in chosen:
        raw_setting = apply_overrides(copy.deepcopy(study.base), _override_text(setting.set))
        raw_setting = apply_overrides(raw_setting, list(overrides))
        raw_setting["analysis"] = {**(raw_setting.get("analysis") or {}), "attack": attack}
        try:
            configs.append((setting, validate_config(raw_setting)))
        except ConfigError as exc:
            raise ConfigError(f"study setting {setting.name!r}: {exc}") from None
    return study.model_copy(update={"attack": attack}), configs


def _default_attack(base: dict[str, Any]) -> str:
    from mialens.attacks.registry import build_attack

    if (base.get("analysis") or {}).get("attack"):
        return base["analysis"]["attack"]
    config = validate_config(base)
    names = [build_attack(spec).name for spec in config.audit.attacks]
    return next((n for n in _PREFERRED_ATTACKS if n in names), names[0])


def _row(setting: StudySetting, result, summary: dict[str, Any], attack: str) -> dict[str, Any]:
    """What study.json records about one setting. ``groups`` is the analysis headline: per
    group of measures (geometric outlierness, model-output difficulty, memorisation) the
    one with the highest AUC for the primary vulnerable set, with its interval; ``link``
    (one best measure of any group, often the circular ``out_neg_margin``) is kept for
    scripts that read it."""
    m = result.metrics[attack]
    eps = [r["epsilon"] for r in result.training if r.get("epsilon") is not None]
    epochs = [r["epochs_run"] for r in result.training if r.get("epochs_run") is not None]
    stats_ = summary["statistics"]
    primary = summary["primary_set"]
    measures = {}
    for name, corr in stats_["spearman"].items():
        entry = stats_["sets"].get(primary, {}).get("measures", {}).get(name, {})
        measures[name] = {
            "rho": corr["rho"],
            "ci_low": corr["ci_low"],
            "ci_high": corr["ci_high"],
            "p_holm": corr.get("p_holm"),
            "within_class_rho": stats_["within_class"][name]["rho"],
            "within_class_p_holm": stats_["within_class"][name].get("p_holm"),
            "auc": entry.get("auc"),
        }
    return {
        "name": setting.name,
        "description": setting.description,
        "overrides": ", ".join(_override_text(setting.set)) or "(base)",
        "train_acc": result.utility["train_accuracy"]["mean"],
        "test_acc": result.utility["test_accuracy"]["mean"],
        "generalization_gap": result.utility["generalization_gap"]["mean"],
        "auc": m["auc"]["mean"],
        "advantage": m["advantage"]["mean"],
        "tpr_at_fpr": {k: v["mean"] for k, v in m["tpr_at_fpr"].items()},
        "tpr_resolved": {k: v["resolved"] for k, v in m["tpr_at_fpr"].items()},
        "tpr_reachable": {k: v.get("reachable", True) for k, v in m["tpr_at_fpr"].items()},
        "epsilon": float(np.mean(eps)) if eps else None,
        "epochs_run": float(np.mean(epochs)) if epochs else None,
        "vulnerable": {k: v["vulnerable"] for k, v in summary["vulnerability"]["levels"].items()},
        "mean_vulnerability": summary["vulnerability"]["mean"],
        "link": summary["link"],
        "primary_set": primary,
        "groups": summary["headline"]["groups"],
        "intra_class_outliers_supported": summary["headline"]["intra_class_outliers_supported"],
        "measures": measures,
        "canaries": summary.get("canaries"),
        "attacks": {
            name: {
                "auc": a["auc"]["mean"],
                "advantage": a["advantage"]["mean"],
                "tpr_at_fpr": {k: v["mean"] for k, v in a["tpr_at_fpr"].items()},
            }
            for name, a in result.metrics.items()
        },
    }


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
    pairs = [
        (r["generalization_gap"], r["geometric"]["rho"])
        for r in rows
        if r["geometric"] and r["geometric"]["rho"] is not None
    ]
    if len(pairs) >= 4 and np.ptp([g for g, _ in pairs]) > 0:
        rho, p = stats.spearmanr(*zip(*pairs, strict=True))
        out["gap_vs_link"] = {
            "measure": geometric,
            "group": "geometric",
            "rho": float(rho),
            "p": float(p),
            "settings": len(pairs),
        }
    return out


def _findings(study: dict[str, Any]) -> list[str]:
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


def _read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / ANALYSIS_DIR / "summary.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the analysis {path}: {exc}") from exc


def _finished(run_dir: Path, config: AuditConfig) -> tuple[AuditResult, dict] | None:
    """The result and analysis summary of ``run_dir`` if it holds a finished audit of
    exactly ``config`` (so an interrupted study resumes at its first unfinished setting)."""
    if not (run_dir / ANALYSIS_DIR / "summary.json").is_file():
        return None
    try:
        result = load_result(run_dir)
    except DataError:
        return None
    if result.config != json.loads(json.dumps(config.model_dump(mode="json"))):
        return None
    summary = _read_summary(run_dir)
    return (result, summary) if "headline" in summary else None  # older analyses: rerun


def run_study(
    study: StudyConfig,
    configs: list[tuple[StudySetting, AuditConfig]],
    out_dir: str | os.PathLike,
    progress: bool = False,
) -> dict[str, Any]:
    """Audit and analyse every setting, then write ``study.json`` and ``report.html``.

    A setting whose folder already holds a finished audit and analysis of the same
    configuration is read back instead of run again."""
    from mialens.audit.runner import run_audit
    from mialens.report.html import render_study

    out = Path(out_dir)
    rows = []
    for i, (setting, config) in enumerate(configs, 1):
        log.info("study %s: setting %d of %d, %s", study.name, i, len(configs), setting.name)
        run_dir = out / "settings" / setting.name
        done = _finished(run_dir, config)
        if done is not None:
            log.info(
                "setting %s: reusing the finished audit and analysis in %s", setting.name, run_dir
            )
            result, summary = done
        else:
            result = run_audit(config, run_dir, progress=progress)
            summary = _read_summary(run_dir)
        rows.append(_row(setting, result, summary, study.attack))
    levels = [fpr_key(v) for v in configs[0][1].audit.fpr]
    doc: dict[str, Any] = {
        "name": study.name,
        "description": study.description,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "dataset": configs[0][1].dataset.name,
        "attack": study.attack,
        "fpr_levels": levels,
        "vulnerable_levels": list(rows[0]["vulnerable"]),
        "settings": rows,
    }
    doc.update(summarize_study(rows, levels))
    doc["findings"] = _findings(doc)
    doc = json_safe(doc)
    write_json(out / STUDY_FILE, doc)
    # the figure's right panel plots row["common"]: there, the geometric measure
    plotted = [{**r, "common": r["geometric"]} for r in rows]
    figure = study_png(plotted, doc["figure_level"]) if rows else None
    write_text(out / "report.html", render_study(doc, figure))
    return doc
