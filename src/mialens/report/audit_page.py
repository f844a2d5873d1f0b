"""The audit's HTML page: design, utility, the metrics table with its tie notes, the
attacks, the figures, training, canaries and the link to the leakage analysis.

The page is rendered from ``templates/report.html`` and embeds its figures as base64 PNG,
so it references no external resource and can be mailed or archived as a single file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from mialens.audit.results import AuditResult
from mialens.metrics.leakage import LevelResult, Spread, fpr_key
from mialens.metrics.threshold_position import MIN_FALSE_POSITIVES_FOR_INTERVAL
from mialens.report import figure_data
from mialens.report.environment import render
from mialens.report.format import _b64, _date, _num, _pct, _share, _span
from mialens.report.secret_canaries import secret_canary_section

if TYPE_CHECKING:  # an audit without an analysis does not load the analysis (scipy.stats)
    from mialens.analysis.summary import AnalysisSummary

_DESIGN_LABELS = {
    "dataset": "data set",
    "num_models": "models trained",
    "targets": "target models",
    "pool_size": "audit pool (samples scored per target)",
    "validation_size": "validation samples",
    "test_size": "test samples (utility)",
    "population_size": "population samples (trained no model)",
    "queries_per_sample": "queries per sample",
    "seed": "seed",
    "canaries": "canaries (replace pool samples)",
}


TIE_FLAG_SHARE = 0.01  # an attack whose largest tie group holds more of its scores is flagged


_UTILITY_LABELS = {
    "train_accuracy": "train accuracy (on members)",
    "test_accuracy": "test accuracy",
    "generalization_gap": "generalization gap (train − test)",
    "train_loss": "mean token loss on members (nats)",
    "test_loss": "mean token loss on the test set (nats)",
    "loss_gap": "loss gap (test − train)",
    "train_perplexity": "perplexity on members",
    "test_perplexity": "perplexity on the test set",
}


def _cell(block: Spread, digits: int, resolved: bool = True) -> dict[str, Any]:
    """One metric as mean ± std with its t-interval over targets and bootstrap interval.

    With a single target there is no spread: the cell shows the value alone.
    """
    f = f"{{:.{digits}f}}".format
    boot = block.bootstrap
    several = block.n > 1
    return {
        "mean": block.mean,
        "main": f"{f(block.mean)} ± {f(block.std)}" if several else f(block.mean),
        "t": f"[{f(block.ci_low)}, {f(block.ci_high)}]" if several else None,
        "boot": f"[{f(boot.low)}, {f(boot.high)}]" if boot else None,
        "range": f"{f(block.min)} – {f(block.max)}" if several else f(block.min),
        "resolved": resolved,
        "unreachable": None,
        "widened": False,
        "best": False,
    }


def _tie_flag(entry: LevelResult) -> str | None:
    """ "unreachable: 47% of scores tie" for a level that a tie group makes unreachable."""
    bad = entry.unreachable()
    if not bad:
        return None
    share = _share(max(entry.ties.group_share[t] for t in bad))
    n = len(entry.ties.reachable)
    where = "" if len(bad) == n else f" on {len(bad)} of {n} targets"
    return f"unreachable{where}: {share} of scores tie"


def _metrics_table(result: AuditResult) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Column headers and one row of cells per attack; the best mean of a column is marked.

    A TPR cell at a level that ties make unreachable carries its flag, and one whose
    bootstrap interval carries the threshold's position (few false positives) ``widened``; an
    attack whose largest tie group holds over :data:`TIE_FLAG_SHARE` of the scores
    carries ``ties``.
    """
    columns = [
        {"label": "AUC", "title": "area under the ROC curve"},
        {"label": "advantage", "title": "max over thresholds of TPR − FPR (Yeom et al. 2018)"},
    ] + [
        {"label": f"TPR @ {_pct(lv)} FPR", "title": f"TPR at FPR {fpr_key(lv)}"}
        for lv in result.fpr_levels
    ]
    rows = []
    for name, m in result.metrics.items():
        cells = [_cell(m.auc, 3), _cell(m.advantage, 3)]
        for lv in result.fpr_levels:
            entry = m.at(lv)
            cells.append(
                {
                    **_cell(entry, 4, entry.resolved),
                    "unreachable": _tie_flag(entry),
                    "widened": entry.interval_widened,
                }
            )
        share = m.tie_share.max if m.tie_share is not None else 0.0
        ties = f"ties: {_share(share)} of scores at one value" if share > TIE_FLAG_SHARE else None
        rows.append({"name": name, "cells": cells, "ties": ties})
    for j in range(len(columns)):
        best = max((row["cells"][j]["mean"] for row in rows), default=None)
        for row in rows:
            row["cells"][j]["best"] = len(rows) > 1 and row["cells"][j]["mean"] == best
    return columns, rows


def _few_false_positives(result: AuditResult) -> dict[str, Any] | None:
    """The levels whose bootstrap intervals are widened, with the false positives each
    allows (the same for every attack: they depend on the non-member counts alone)."""
    levels = {}
    for m in result.metrics.values():
        for lv in result.fpr_levels:
            entry = m.at(lv)
            if entry.interval_widened:
                levels[lv] = entry.allowed_false_positives
    if not levels:
        return None
    return {
        "levels": ", ".join(f"{_pct(lv)} ({k} allowed)" for lv, k in sorted(levels.items())),
        "minimum": MIN_FALSE_POSITIVES_FOR_INTERVAL,
    }


def _tie_notes(result: AuditResult) -> list[str]:
    """Per attack, why its unreachable levels are unreachable: which tie group, which jump."""
    notes = []
    for name, m in result.metrics.items():
        groups: dict[str, list[str]] = {}
        for lv in result.fpr_levels:
            entry = m.at(lv)
            bad = entry.unreachable()
            if not bad:
                continue
            ties = entry.ties
            jump = (
                f"{len(bad)} of {len(ties.reachable)} targets): a tie group holding "
                f"{_span([100 * ties.group_share[t] for t in bad], '{:.3g}')}% of the scores "
                "straddles it; accepting the group moves the FPR from "
                f"{_span([100 * ties.achieved_fpr[t] for t in bad], '{:.3g}')}% to "
                f"{_span([100 * ties.next_fpr[t] for t in bad], '{:.3g}')}%"
            )
            groups.setdefault(jump, []).append(_pct(lv))
        notes += [f"{name} at {', '.join(lvs)} FPR ({jump}." for jump, lvs in groups.items()]
    return notes


def _highlights(result: AuditResult) -> list[str]:
    """One-line findings: the strongest attack by AUC and at the lowest resolved FPR."""
    if not result.metrics:
        return []
    metrics = result.metrics
    by_auc = max(metrics, key=lambda n: metrics[n].auc.mean)
    out = [f"Highest mean AUC: {by_auc} ({metrics[by_auc].auc.mean:.3f})."]
    resolved = [lv for lv in result.fpr_levels if all(m.at(lv).resolved for m in metrics.values())]
    if resolved:
        level = min(resolved)
        best = max(metrics, key=lambda n: metrics[n].at(level).mean)
        tpr = metrics[best].at(level).mean
        out.append(
            f"Highest mean TPR at the lowest resolved FPR ({_pct(min(resolved))}): "
            f"{best} ({tpr:.4f}, i.e. {tpr / min(resolved):.1f}× chance)."
        )
    unreachable = [
        name
        for name, m in metrics.items()
        if any(m.at(lv).unreachable() for lv in result.fpr_levels)
    ]
    if unreachable:
        out.append(
            f"Tied scores leave some FPR levels unreachable for {', '.join(unreachable)}: "
            "their TPR there is a TPR at a much lower FPR (see † under the table)."
        )
    return out


def _design_rows(result: AuditResult) -> list[tuple[str, str]]:
    """Known design entries first with readable labels, then any others by key."""
    design = result.design
    rows = [(label, str(design[key])) for key, label in _DESIGN_LABELS.items() if key in design]
    rows += [
        (key, str(v))
        for key, v in design.items()
        if key not in _DESIGN_LABELS and key != "fidelity"  # its own section
    ]
    members = result.members.sum(axis=1)
    non = (~result.members).sum(axis=1)
    rows.append(("members per target", _span(members.tolist(), "{}")))
    rows.append(("non-members per target", _span(non.tolist(), "{}")))
    rows.append(("smallest resolvable FPR (1 / non-members)", f"{1 / non.min():.3g}"))
    return rows


def _fidelity(result: AuditResult) -> dict[str, Any] | None:
    """The reference-fidelity section of a user-supplied target (None without one):
    accuracies side by side, the recipes as YAML and the warnings."""
    fidelity = result.design.get("fidelity")
    if not fidelity:
        return None
    target, refs, gap = fidelity["target"], fidelity["references"], fidelity["gap"]
    rows = [
        {
            "label": f"{split} accuracy",
            "target": _num(target[f"{split}_accuracy"], 3),
            "references": _num(refs[f"{split}_accuracy"], 3),
            "gap": f"{gap[split]:+.3f}",
            "over": abs(gap[split]) > fidelity["threshold"],
        }
        for split in ("train", "test")
    ]
    recipes = [
        (who, yaml.safe_dump(fidelity[key], sort_keys=False) if fidelity[key] else "not given")
        for who, key in (("target", "target_recipe"), ("references", "reference_recipe"))
    ]
    return {
        "rows": rows,
        "threshold": f"{fidelity['threshold']:g}",
        "recipes": recipes,
        "warnings": fidelity["warnings"],
    }


def _utility_rows(result: AuditResult) -> list[dict[str, Any]]:
    return [
        {"label": label, **_cell(Spread.from_json(result.utility[key]), 3)}
        for key, label in _UTILITY_LABELS.items()
        if key in result.utility
    ]


def _attack_rows(result: AuditResult) -> list[dict[str, Any]]:
    rows = []
    for name in result.scores:
        info = result.attacks.get(name, {})
        params = info.get("params") or {}
        rows.append(
            {
                "name": name,
                "summary": info.get("summary", ""),
                "paper": info.get("paper", ""),
                "threat_model": info.get("threat_model", ""),
                "references": info.get("references", ""),
                "population": "yes" if info.get("uses_population") else "no",
                "queries": info.get("queries_per_sample", ""),
                "params": ", ".join(f"{k}={v}" for k, v in params.items()) or "none",
            }
        )
    return rows


def _training(result: AuditResult) -> dict[str, Any] | None:
    """Summary and per-model rows of the training records (None without records)."""
    records = result.training
    if not records:
        return None
    seconds = [float(r.get("seconds") or 0.0) for r in records]
    epochs = [r["epochs_run"] for r in records if r.get("epochs_run") is not None]
    best = [r["best_epoch"] for r in records if r.get("best_epoch") is not None]
    eps = [r["epsilon"] for r in records if r.get("epsilon") is not None]
    dp = (result.config.get("train") or {}).get("dp") or {}
    summary = [
        ("models", str(len(records))),
        ("reused from the cache", str(sum(bool(r.get("cached")) for r in records))),
    ]
    if epochs:
        summary.append(("epochs run", _span(epochs, "{}")))
    if best:
        summary.append(("best epoch (early stopping)", _span(best, "{}")))
    summary.append(
        ("training seconds", f"{sum(seconds):.1f} in all, {np.mean(seconds):.2f} per model")
    )
    if eps:
        delta = f" at δ = {dp['delta']:g}" if "delta" in dp else ""
        summary.append(("DP ε", _span(eps, "{:.3g}") + delta))
    rows = [
        {
            "model": r.get("model", ""),
            "cached": "yes" if r.get("cached") else "no",
            "epochs": "" if r.get("epochs_run") is None else r["epochs_run"],
            "best": "" if r.get("best_epoch") is None else r["best_epoch"],
            "epsilon": "" if r.get("epsilon") is None else f"{r['epsilon']:.3g}",
            "seconds": f"{float(r.get('seconds') or 0.0):.2f}",
            "key": str(r.get("key", ""))[:12],
        }
        for r in records
    ]
    return {"summary": summary, "rows": rows, "dp": bool(eps)}


def _figures(result: AuditResult, pngs: dict[str, bytes] | None) -> list[dict[str, Any]]:
    """The three figures as base64 PNG (``pngs``, or drawn here), each with the name of
    its caption macro in ``templates/_captions.html`` and the values that caption states."""
    if pngs is None:
        from mialens.report.plots import audit_pngs  # matplotlib loads only to draw here

        pngs = audit_pngs(figure_data.audit_figures(result))
    targets = len(result.target_models)
    level = figure_data.spread_level(result)
    nonmembers = figure_data.min_nonmembers(result)
    return [
        {
            "caption": "roc",
            "data": _b64(pngs["roc"]),
            "args": {"n_targets": targets, "nonmembers": nonmembers},
        },
        {
            "caption": "histogram",
            "data": _b64(pngs["histogram"]),
            "args": {
                "n_targets": targets,
                "percentiles": figure_data.HIST_PERCENTILES,
                "log_share": figure_data.HIST_LOG_SHARE,
            },
        },
        {
            "caption": "spread",
            "data": _b64(pngs["spread"]),
            "args": {
                "n_targets": targets,
                "level": level,
                "lowered": level != figure_data.LEGEND_FPR,
                "nonmembers": nonmembers,
            },
        },
    ]


def _canaries(result: AuditResult) -> dict[str, Any] | None:
    """Per attack: the canary-only ROC pooled over targets and the global-threshold TPRs."""
    if not any(m.canaries is not None for m in result.metrics.values()):
        return None
    levels = result.fpr_levels
    rows = []
    for name, m in result.metrics.items():
        c = m.canaries
        rows.append(
            {
                "name": name,
                "auc": _num(c.auc),
                "pooled": [
                    {"main": _num(c.tpr_at_fpr[lv].value, 4), "resolved": c.tpr_at_fpr[lv].resolved}
                    for lv in levels
                ],
                "global": [
                    f"{_num(c.global_threshold[lv].canaries, 3)} vs "
                    f"{_num(c.global_threshold[lv].natural, 3)}"
                    for lv in levels
                ],
            }
        )
    first = next(iter(result.metrics.values())).canaries
    return {
        "levels": [_pct(lv) for lv in levels],
        "rows": rows,
        "count": first.count,
        "negatives": first.n_nonmembers,
    }


def _blind_baseline(result: AuditResult) -> dict[str, Any] | None:
    """The distribution-shift gate of a text audit (None without one): its banner and
    its row under the attacks in the leakage table."""
    gate = result.blind_baseline
    if not gate:
        return None
    return {
        "fires": gate["fires"],
        "message": gate["message"],
        "auc": _num(gate["auc"], 3),
        "interval": f"{gate['level']:.0%} [{_num(gate['ci_low'], 3)}, {_num(gate['ci_high'], 3)}]",
        "source": gate.get("source", ""),
        "folds": gate["folds"],
    }


def _analysis_brief(analysis: AnalysisSummary) -> list[str]:
    """The analysis section's lines; imported here, as an audit without an analysis does
    not need the analysis pages (nor the scikit-learn models they import)."""
    from mialens.report.analysis_page import analysis_brief

    return analysis_brief(analysis)


def render_report(
    result: AuditResult,
    analysis: AnalysisSummary | None = None,
    pngs: dict[str, bytes] | None = None,
) -> str:
    """The audit as one self-contained HTML page (figures embedded as base64 PNG);
    ``analysis``, the summary of its leakage analysis, adds a section linking it (a text
    audit's inserted canaries have theirs, from the result). ``pngs`` are
    the figures already drawn (:func:`mialens.report.plots.audit_pngs` of
    :func:`mialens.report.figure_data.audit_figures`), else they are drawn here."""
    columns, rows = _metrics_table(result)
    boot = {m.bootstrap_replicates for m in result.metrics.values()} - {None}
    dataset = result.design.get("dataset") or (result.config.get("dataset") or {}).get("name")
    context = {
        "dataset": dataset or "unnamed data set",
        "date": _date(result.created),
        "n_targets": len(result.target_models),
        "n_samples": int(result.members.shape[1]),
        "highlights": _highlights(result),
        "design": _design_rows(result),
        "utility": _utility_rows(result),
        "fidelity": _fidelity(result),
        "test_source": result.utility.get("test_source"),
        "columns": columns,
        "rows": rows,
        "bootstrap": ", ".join(str(b) for b in sorted(boot)),
        "any_unresolved": any(not c["resolved"] for row in rows for c in row["cells"]),
        "tie_notes": _tie_notes(result),
        "few_false_positives": _few_false_positives(result),
        "tie_flag_share": _share(TIE_FLAG_SHARE),
        "min_nonmembers": figure_data.min_nonmembers(result),
        "attacks": _attack_rows(result),
        "figures": _figures(result, pngs),
        "training": _training(result),
        "canaries": _canaries(result),
        "blind_baseline": _blind_baseline(result),
        "secret_canaries": secret_canary_section(result.secret_canaries),
        "analysis": _analysis_brief(analysis) if analysis else None,
        "config_yaml": yaml.safe_dump(result.config, sort_keys=False, allow_unicode=True),
        "environment": list(result.environment.items()),
    }
    return render("report.html", **context)
