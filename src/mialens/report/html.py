"""The self-contained HTML reports: an audit, its leakage analysis and a study.

The page is rendered from ``templates/report.html`` with Jinja2 (autoescaping on) and
embeds its figures as base64 PNG, so it references no external resource and can be
mailed or archived as a single file.
"""

from __future__ import annotations

import base64
import datetime as _dt
from functools import lru_cache
from typing import Any

import numpy as np
import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined

from mialens.analysis.explain import Analysis
from mialens.analysis.outliers import GROUPS, describe, measure_group
from mialens.audit.results import AuditResult
from mialens.metrics.leakage import fpr_key
from mialens.report import plots
from mialens.report.analysis_figures import analysis_figures
from mialens.report.analysis_plots import study_png

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
}


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("mialens.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _pct(level: float) -> str:
    """An FPR level as a percentage: ``0.001 -> "0.1%"``."""
    return f"{100 * level:g}%"


def _date(created: str) -> str:
    try:
        stamp = _dt.datetime.fromisoformat(created)
    except ValueError:
        return created
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(_dt.timezone.utc)
        return stamp.strftime("%Y-%m-%d %H:%M UTC")
    return stamp.strftime("%Y-%m-%d %H:%M")


def _cell(block: dict[str, Any], digits: int) -> dict[str, Any]:
    """One metric as mean ± std with its t-interval over targets and bootstrap interval.

    With a single target there is no spread: the cell shows the value alone.
    """
    f = f"{{:.{digits}f}}".format
    boot = block.get("bootstrap")
    several = block["n"] > 1
    return {
        "mean": block["mean"],
        "main": f"{f(block['mean'])} ± {f(block['std'])}" if several else f(block["mean"]),
        "t": f"[{f(block['ci_low'])}, {f(block['ci_high'])}]" if several else None,
        "boot": f"[{f(boot['low'])}, {f(boot['high'])}]" if boot else None,
        "range": f"{f(block['min'])} – {f(block['max'])}" if several else f(block["min"]),
        "resolved": block.get("resolved", True),
        "unreachable": None,
        "best": False,
    }


def _share(share: float) -> str:
    """A share of scores as a percentage: ``0.474 -> "47%"``, ``0.042 -> "4.2%"``."""
    return f"{100 * share:.0f}%" if share >= 0.095 else f"{100 * share:.2g}%"


def _unreachable(entry: dict[str, Any]) -> list[int]:
    """Targets on which ties make an FPR level unreachable (none for older metrics.json)."""
    ties = entry.get("ties")
    return [] if ties is None else [t for t, ok in enumerate(ties["reachable"]) if not ok]


def _tie_flag(entry: dict[str, Any]) -> str | None:
    """ "unreachable: 47% of scores tie" for a level that a tie group makes unreachable."""
    bad = _unreachable(entry)
    if not bad:
        return None
    share = _share(max(entry["ties"]["group_share"][t] for t in bad))
    n = len(entry["ties"]["reachable"])
    where = "" if len(bad) == n else f" on {len(bad)} of {n} targets"
    return f"unreachable{where}: {share} of scores tie"


def _metrics_table(result: AuditResult) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Column headers and one row of cells per attack; the best mean of a column is marked.

    A TPR cell at a level that ties make unreachable carries its flag; an attack whose
    largest tie group holds over :data:`TIE_FLAG_SHARE` of the scores carries ``ties``.
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
        cells = [_cell(m["auc"], 3), _cell(m["advantage"], 3)]
        for lv in result.fpr_levels:
            entry = m["tpr_at_fpr"][fpr_key(lv)]
            cells.append({**_cell(entry, 4), "unreachable": _tie_flag(entry)})
        share = (m.get("tie_share") or {}).get("max", 0.0)
        ties = f"ties: {_share(share)} of scores at one value" if share > TIE_FLAG_SHARE else None
        rows.append({"name": name, "cells": cells, "ties": ties})
    for j in range(len(columns)):
        best = max((row["cells"][j]["mean"] for row in rows), default=None)
        for row in rows:
            row["cells"][j]["best"] = len(rows) > 1 and row["cells"][j]["mean"] == best
    return columns, rows


def _tie_notes(result: AuditResult) -> list[str]:
    """Per attack, why its unreachable levels are unreachable: which tie group, which jump."""
    notes = []
    for name, m in result.metrics.items():
        groups: dict[str, list[str]] = {}
        for lv in result.fpr_levels:
            entry = m["tpr_at_fpr"][fpr_key(lv)]
            bad = _unreachable(entry)
            if not bad:
                continue
            ties = entry["ties"]
            jump = (
                f"{len(bad)} of {len(ties['reachable'])} targets): a tie group holding "
                f"{_span([100 * ties['group_share'][t] for t in bad], '{:.3g}')}% of the scores "
                "straddles it; accepting the group moves the FPR from "
                f"{_span([100 * ties['achieved_fpr'][t] for t in bad], '{:.3g}')}% to "
                f"{_span([100 * ties['next_fpr'][t] for t in bad], '{:.3g}')}%"
            )
            groups.setdefault(jump, []).append(_pct(lv))
        notes += [f"{name} at {', '.join(lvs)} FPR ({jump}." for jump, lvs in groups.items()]
    return notes


def _highlights(result: AuditResult) -> list[str]:
    """One-line findings: the strongest attack by AUC and at the lowest resolved FPR."""
    if not result.metrics:
        return []
    metrics = result.metrics
    by_auc = max(metrics, key=lambda n: metrics[n]["auc"]["mean"])
    out = [f"Highest mean AUC: {by_auc} ({metrics[by_auc]['auc']['mean']:.3f})."]
    resolved = [
        lv
        for lv in result.fpr_levels
        if all(m["tpr_at_fpr"][fpr_key(lv)]["resolved"] for m in metrics.values())
    ]
    if resolved:
        key = fpr_key(min(resolved))
        best = max(metrics, key=lambda n: metrics[n]["tpr_at_fpr"][key]["mean"])
        tpr = metrics[best]["tpr_at_fpr"][key]["mean"]
        out.append(
            f"Highest mean TPR at the lowest resolved FPR ({_pct(min(resolved))}): "
            f"{best} ({tpr:.4f}, i.e. {tpr / min(resolved):.1f}× chance)."
        )
    unreachable = [
        name
        for name, m in metrics.items()
        if any(_unreachable(m["tpr_at_fpr"][fpr_key(lv)]) for lv in result.fpr_levels)
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
    rows += [(key, str(v)) for key, v in design.items() if key not in _DESIGN_LABELS]
    members = result.members.sum(axis=1)
    non = (~result.members).sum(axis=1)
    rows.append(("members per target", _span(members.tolist(), "{}")))
    rows.append(("non-members per target", _span(non.tolist(), "{}")))
    rows.append(("smallest resolvable FPR (1 / non-members)", f"{1 / non.min():.3g}"))
    return rows


def _utility_rows(result: AuditResult) -> list[dict[str, Any]]:
    return [
        {"label": label, **_cell(result.utility[key], 3)}
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


def _span(values: list[float], fmt: str) -> str:
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo} – {hi}"


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


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def _figures(result: AuditResult) -> list[dict[str, str]]:
    """The three figures as base64 PNG with their captions."""
    n_non = plots.min_nonmembers(result)
    targets = _plural(len(result.target_models), "target")
    level = plots.spread_level(result)
    lo, hi = plots.HIST_PERCENTILES
    spread_note = (
        ""
        if level == plots.LEGEND_FPR
        else f" (1% FPR needs at least 100 non-members per target; with {n_non} the lowest "
        f"resolvable FPR, {_pct(level)}, is used instead)"
    )
    return [
        {
            "title": "ROC curves (log-log)",
            "alt": "log-log ROC curves of every attack",
            "data": _b64(plots.roc_png(result)),
            "caption": (
                f"Mean over {targets} of each target's TPR on a log-spaced FPR "
                f"grid from 1/{n_non} (the smallest non-member count of a target) to 1, as "
                "steps without interpolation inside tied scores: a group of tied scores is "
                "accepted whole, so the curve rises vertically at the FPR where the group "
                "ends. Dotted: chance (TPR = FPR). "
                "The legend gives each attack's mean AUC and mean TPR at 1% FPR (n/a when "
                "a target has fewer than 100 non-members; 'unreachable: ties' when a tie group "
                "straddles 1% FPR on some target and the curve jumps past it)."
            ),
        },
        {
            "title": "Score distributions",
            "alt": "histograms of member and non-member scores of every attack",
            "data": _b64(plots.histogram_png(result)),
            "caption": (
                f"Scores of members (red) and non-members (blue) pooled over {targets}, "
                "each group normalised to unit area. Each panel bins the "
                f"{lo:g}–{hi:g} percentile range of its pooled scores; scores outside it "
                "are clipped into the outermost bins. Panels labelled 'log count' have a "
                f"logarithmic count axis because one bin holds over "
                f"{100 * plots.HIST_LOG_SHARE:g}% of the scores."
            ),
        },
        {
            "title": f"Per-target spread of the TPR at {_pct(level)} FPR",
            "alt": f"per-target TPR at {_pct(level)} FPR of every attack",
            "data": _b64(plots.spread_png(result)),
            "caption": (
                f"TPR at {_pct(level)} FPR per target ({targets}; points jittered "
                "sideways), with box plots of median, quartiles and whiskers to "
                f"1.5 IQR{spread_note}. Dotted: chance."
            ),
        },
    ]


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2g}" if value >= 1e-4 else "< 1e-4"


def _canaries(result: AuditResult) -> dict[str, Any] | None:
    """Per attack: the canary-only ROC pooled over targets and the global-threshold TPRs."""
    if not any("canaries" in m for m in result.metrics.values()):
        return None
    levels = [fpr_key(lv) for lv in result.fpr_levels]
    rows = []
    for name, m in result.metrics.items():
        c = m["canaries"]
        pooled = c["pooled"]["tpr_at_fpr"]
        rows.append(
            {
                "name": name,
                "auc": _num(c["pooled"]["auc"]),
                "pooled": [
                    {"main": _num(pooled[k]["value"], 4), "resolved": pooled[k]["resolved"]}
                    for k in levels
                ],
                "global": [
                    f"{_num(c['global_threshold'][k]['canaries'], 3)} vs "
                    f"{_num(c['global_threshold'][k]['natural'], 3)}"
                    for k in levels
                ],
            }
        )
    first = next(iter(result.metrics.values()))["canaries"]
    return {
        "levels": [_pct(lv) for lv in result.fpr_levels],
        "rows": rows,
        "count": first["count"],
        "negatives": first["pooled"]["n_nonmembers"],
    }


def _group_finding(entry: dict[str, Any]) -> str:
    spread = (
        f"{entry['measures']} measures, AUC {_num(entry['auc_min'], 2)}–{_num(entry['auc'], 2)}; "
        if entry["measures"] > 1
        else ""
    )
    return (
        f"{spread}best {entry['measure']} AUC {_num(entry['auc'])} [{_num(entry['ci_low'])}, "
        f"{_num(entry['ci_high'])}] (within-class ρ {_num(entry['within_class_rho'])}, "
        f"Holm p {_p(entry['within_class_p_holm'])})"
    )


def _headline_lines(summary: dict[str, Any]) -> list[str]:
    """The best measure of each group for the primary vulnerable set, and whether the
    geometric group supports the intra-class-outlier claim."""
    head = summary["headline"]
    names = summary["group_names"]
    found = {g: e for g, e in head["groups"].items() if e is not None}
    if not found:
        return ["No measure could be tested against the vulnerable sets (too few samples)."]
    set_title = _set_title(head["set"], summary)
    lines = [
        f"Best measure per group for telling the set '{set_title}' apart (AUC, 95% DeLong "
        "interval): "
        + "; ".join(f"{names[g]}: {_group_finding(e)}" for g, e in found.items())
        + "."
    ]
    geo = found.get("geometric")
    if geo is None:
        lines.append("No geometric measure was computed (analysis.spaces), so the seed paper's "
                     "intra-class-outlier claim is not tested.")  # fmt: skip
        return lines
    verdict = "supports" if head["intra_class_outliers_supported"] else "does not support"
    lines.append(
        f"Geometric outlierness {verdict} the seed paper's claim that intra-class outliers leak "
        f"({geo['measure']}: AUC interval {'above' if geo['ci_low'] > 0.5 else 'not above'} "
        f"0.5, Holm p {_p(geo['p_holm'])}). The model-output measures describe difficulty as "
        "the OUT models see it, the quantity the attack itself scores, so they are no evidence "
        "for that claim."
    )
    return lines


def _ranking_line(summary: dict[str, Any]) -> str:
    """The conformal ceiling and how the samples beyond it are ordered."""
    vul = summary["vulnerability"]
    n, tail = summary["design"]["pool_size"], vul["tail"]
    ties = tail["ties_at_max"]
    flag = " (more than 1% of the pool: ties, ordered by LiRA separation)" if ties > n / 100 else ""
    return (
        f"{vul['at_ceiling']} samples reach the conformal ceiling (detection FPR "
        f"{vul['floor']:.2g} at every target they trained, vulnerability "
        f"{_num(vul['ceiling'], 2)}); samples are ranked by the tail vulnerability (a fitted "
        f"tail, not a p-value), whose maximum {_num(tail['max'], 2)} is reached by "
        f"{_plural(ties, 'sample')}{flag}."
    )


def analysis_brief(summary: dict[str, Any]) -> list[str]:
    """The analysis' findings in a few sentences, for the audit report."""
    vul = summary["vulnerability"]
    lines = [
        f"Vulnerability from {summary['attack']} ({summary['attack_choice']}). "
        + "; ".join(
            f"{lv['vulnerable']} samples vulnerable at {_pct(float(k))} FPR "
            f"({lv['flagged_at_least_once']} flagged at least once, "
            f"{lv['expected_flagged_by_chance']:.0f} expected by chance)"
            for k, lv in vul["levels"].items()
        )
        + ".",
        _ranking_line(summary),
    ]
    lines.extend(_headline_lines(summary))
    canaries = summary.get("canaries")
    if canaries:
        lines.append(
            f"{canaries['count']} canaries: {100 * canaries['share_in_sets']['top']:.0f}% rank "
            f"in the top {100 * canaries['top_fraction']:g}% most vulnerable samples."
        )
    return lines


def render_report(result: AuditResult, analysis: dict[str, Any] | None = None) -> str:
    """The audit as one self-contained HTML page (figures embedded as base64 PNG);
    ``analysis``, the summary of its leakage analysis, adds a section linking it."""
    columns, rows = _metrics_table(result)
    boot = {m.get("bootstrap_replicates") for m in result.metrics.values()} - {None}
    dataset = result.design.get("dataset") or (result.config.get("dataset") or {}).get("name")
    context = {
        "dataset": dataset or "unnamed data set",
        "date": _date(result.created),
        "n_targets": len(result.target_models),
        "n_samples": int(result.members.shape[1]),
        "highlights": _highlights(result),
        "design": _design_rows(result),
        "utility": _utility_rows(result),
        "test_source": result.utility.get("test_source"),
        "columns": columns,
        "rows": rows,
        "bootstrap": ", ".join(str(b) for b in sorted(boot)),
        "any_unresolved": any(not c["resolved"] for row in rows for c in row["cells"]),
        "tie_notes": _tie_notes(result),
        "tie_flag_share": _share(TIE_FLAG_SHARE),
        "min_nonmembers": plots.min_nonmembers(result),
        "attacks": _attack_rows(result),
        "figures": _figures(result),
        "training": _training(result),
        "canaries": _canaries(result),
        "analysis": analysis_brief(analysis) if analysis else None,
        "config_yaml": yaml.safe_dump(result.config, sort_keys=False, allow_unicode=True),
        "environment": list(result.environment.items()),
    }
    return _environment().get_template("report.html").render(**context)


def _measure_rows(stats: dict[str, Any], set_keys: list[str]) -> list[dict[str, Any]]:
    """One row per measure, by group and then decreasing within-class rho: correlations and
    set AUCs; the first row of each group carries its title."""
    rows = []
    for name, corr in stats["spearman"].items():
        within = stats["within_class"][name]
        space, text = describe(name)
        cells = []
        for key in set_keys:
            entry = stats["sets"].get(key, {}).get("measures", {}).get(name)
            if entry is None or entry["auc"] is None:
                cells.append({"main": "n/a", "ci": "", "p": "", "best": False})
                continue
            cells.append(
                {
                    "main": _num(entry["auc"]),
                    "ci": f"[{_num(entry['ci_low'])}, {_num(entry['ci_high'])}]",
                    "p": _p(entry["p_holm"]),
                    "best": stats["sets"][key].get("best") == name,
                }
            )
        rows.append(
            {
                "name": name,
                "space": space,
                "text": text,
                "rho": _num(corr["rho"]),
                "rho_ci": (
                    f"[{_num(corr['ci_low'])}, {_num(corr['ci_high'])}]"
                    if corr["rho"] is not None
                    else ""
                ),
                "rho_p": _p(corr.get("p_holm")),
                "within": _num(within["rho"]),
                "within_p": _p(within.get("p_holm")),
                "group": measure_group(name),
                "sort": -1e9 if within["rho"] is None else within["rho"],
                "sets": cells,
            }
        )
    order = list(GROUPS)
    rows.sort(key=lambda r: (order.index(r["group"]), -r["sort"]))
    for i, row in enumerate(rows):
        first = i == 0 or rows[i - 1]["group"] != row["group"]
        row["group_title"] = GROUPS[row["group"]] if first else None
    return rows


def _set_title(key: str, summary: dict[str, Any]) -> str:
    if key == "top":
        return f"top {100 * summary['design']['top_fraction']:g}%"
    return f"vulnerable @ {_pct(float(key))} FPR"


def _statistics_block(stats: dict[str, Any] | None, summary: dict[str, Any]) -> dict | None:
    if stats is None:
        return None
    keys = list(stats["sets"])
    return {
        "n": stats["n"],
        "sets": [
            {
                "title": _set_title(k, summary),
                "size": stats["sets"][k]["size"],
                "skipped": stats["sets"][k].get("skipped"),
            }
            for k in keys
        ],
        "rows": _measure_rows(stats, keys),
    }


def render_analysis(analysis: Analysis) -> str:
    """The leakage analysis as one self-contained HTML page."""
    summary = analysis.summary
    vul = summary["vulnerability"]
    levels = [
        {
            "level": _pct(float(k)),
            "vulnerable": lv["vulnerable"],
            "flagged": lv["flagged_at_least_once"],
            "chance": f"{lv['expected_flagged_by_chance']:.0f}",
            "mean_tpr": _num(lv["mean_tpr"], 4),
            "resolved": lv["resolved"],
        }
        for k, lv in vul["levels"].items()
    ]
    link = summary["link"]
    by_class = [
        {
            "cls": row["name"],
            "n": row["n"],
            "mean": _num(row["mean_vulnerability"]),
            "sets": [row["sets"][k] for k in summary["statistics"]["sets"]],
            "rho": _num(row["spearman"].get(link.get("measure") or "", None)),
        }
        for row in summary["per_class"]
    ]
    context = {
        "summary": summary,
        "brief": analysis_brief(summary),
        "levels": levels,
        "stats": _statistics_block(summary["statistics"], summary),
        "natural": _statistics_block(summary.get("statistics_without_canaries"), summary),
        "figures": [
            {**{k: v for k, v in f.items() if k != "png"}, "data": _b64(f["png"])}
            for f in analysis_figures(analysis)
        ],
        "top": summary["top_samples"],
        "by_class": by_class,
        "set_titles": [_set_title(k, summary) for k in summary["statistics"]["sets"]],
        "canaries": summary.get("canaries"),
        "fmt": _num,
        "pct": _pct,
    }
    return _environment().get_template("analysis.html").render(**context)


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
    return _environment().get_template("study.html").render(**context)


def _study_group(entry: dict[str, Any] | None) -> dict[str, str]:
    """The cells of one group's best measure in a study row (``n/a`` without one)."""
    entry = entry or {}
    return {
        "measure": entry.get("measure") or "n/a",
        "auc": _num(entry.get("auc")),
        "ci": f"[{_num(entry.get('ci_low'))}, {_num(entry.get('ci_high'))}]" if entry else "",
        "within": _num(entry.get("within_class_rho")),
    }
