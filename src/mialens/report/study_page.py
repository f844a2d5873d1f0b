"""A study's HTML page: privacy and utility per training setting and the best measure of
each group."""

from __future__ import annotations

from typing import Any

from mialens.report.analysis_plots import study_png
from mialens.report.environment import render
from mialens.report.format import _b64, _num, _pct


def render_study(study: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """A study's grid of settings (``study.json`` and its unrounded ``rows``) as one
    self-contained HTML page: privacy and utility per setting, then per group of measures
    the best one (AUC with its interval) and whether the geometric group supports the
    intra-class-outlier claim."""
    # the figure's right panel plots row["common"]: there, the geometric measure
    plotted = [{**r, "common": r["geometric"]} for r in rows]
    figure = study_png(plotted, study["figure_level"]) if rows else None
    levels = study["fpr_levels"]
    groups = study.get("group_names") or {}
    table = []
    for row in study["settings"]:
        reachable = row.get("tpr_reachable", {})
        headline = row.get("groups") or {}
        table.append(
            {
                "name": row["name"],
                "train": _num(row["train_acc"]),
                "test": _num(row["test_acc"]),
                "gap": _num(row["generalization_gap"]),
                "auc": _num(row["auc"]),
                "adv": _num(row["advantage"]),
                "tpr": [
                    {
                        "main": _num(row["tpr_at_fpr"].get(k), 4),
                        "resolved": row["tpr_resolved"].get(k, True),
                        "reachable": reachable.get(k, True),
                    }
                    for k in levels
                ],
                "epsilon": "" if row.get("epsilon") is None else f"{row['epsilon']:.3g}",
                "vulnerable": [row["vulnerable"].get(k, "") for k in study["vulnerable_levels"]],
                "groups": [{"key": g, **_study_group(headline.get(g))} for g in groups],
                "supported": "yes" if row.get("intra_class_outliers_supported") else "no",
                "overrides": row["overrides"],
            }
        )
    cells = [c for r in table for c in r["tpr"]]
    context = {
        "study": study,
        "rows": table,
        "groups": [{"key": k, "title": t} for k, t in groups.items()],
        "levels": [_pct(float(k)) for k in levels],
        "vulnerable_levels": [_pct(float(k)) for k in study["vulnerable_levels"]],
        "any_unresolved": any(not c["resolved"] for c in cells),
        "any_unreachable": any(c["resolved"] and not c["reachable"] for c in cells),
        "figure": _b64(figure) if figure else None,
    }
    return render("study.html", **context)


def _study_group(entry: dict[str, Any] | None) -> dict[str, str]:
    """The cells of one group's best measure in a study row (``n/a`` without one)."""
    entry = entry or {}
    return {
        "measure": entry.get("measure") or "n/a",
        "auc": _num(entry.get("auc")),
        "ci": f"[{_num(entry.get('ci_low'))}, {_num(entry.get('ci_high'))}]" if entry else "",
        "within": _num(entry.get("within_class_rho")),
    }
