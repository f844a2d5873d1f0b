"""The leakage analysis's HTML page, and its findings in a few sentences (``analysis_brief``)
for the audit page and the command line."""

from __future__ import annotations

from typing import Any

from mialens.analysis.explain import Analysis
from mialens.analysis.outliers import GROUPS, describe, measure_group
from mialens.analysis.summary import AnalysisSummary, Headline
from mialens.report.analysis_figures import analysis_figures
from mialens.report.environment import render
from mialens.report.format import _b64, _num, _p, _pct, _plural


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


def _headline_lines(head: Headline, names: dict[str, str], top_fraction: float) -> list[str]:
    """The best measure of each group for the primary vulnerable set (``names``: the
    groups' titles), and whether the geometric group supports the intra-class-outlier
    claim."""
    found = {g: e for g, e in head.groups.items() if e is not None}
    if not found:
        return ["No measure could be tested against the vulnerable sets (too few samples)."]
    set_title = _set_title(head.set, top_fraction)
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
    verdict = "supports" if head.intra_class_outliers_supported else "does not support"
    lines.append(
        f"Geometric outlierness {verdict} the seed paper's claim that intra-class outliers leak "
        f"({geo['measure']}: AUC interval {'above' if geo['ci_low'] > 0.5 else 'not above'} "
        f"0.5, Holm p {_p(geo['p_holm'])}). The model-output measures describe difficulty as "
        "the OUT models see it, the quantity the attack itself scores, so they are no evidence "
        "for that claim."
    )
    return lines


def _ranking_line(summary: AnalysisSummary) -> str:
    """The conformal ceiling and how the samples beyond it are ordered."""
    vul = summary.vulnerability
    n, tail = summary.design["pool_size"], vul.tail
    ties = tail["ties_at_max"]
    flag = " (more than 1% of the pool: ties, ordered by LiRA separation)" if ties > n / 100 else ""
    return (
        f"{vul.at_ceiling} samples reach the conformal ceiling (detection FPR "
        f"{vul.floor:.2g} at every target they trained, vulnerability "
        f"{_num(vul.ceiling, 2)}); samples are ranked by the tail vulnerability (a fitted "
        f"tail, not a p-value), whose maximum {_num(tail['max'], 2)} is reached by "
        f"{_plural(ties, 'sample')}{flag}."
    )


def analysis_brief(summary: AnalysisSummary) -> list[str]:
    """The analysis' findings in a few sentences, for the audit report."""
    lines = [
        f"Vulnerability from {summary.attack} ({summary.attack_choice}). "
        + "; ".join(
            f"{lv.vulnerable} samples vulnerable at {_pct(level)} FPR "
            f"({lv.flagged_at_least_once} flagged at least once, "
            f"{lv.expected_flagged_by_chance:.0f} expected by chance)"
            for level, lv in summary.vulnerability.levels.items()
        )
        + ".",
        _ranking_line(summary),
    ]
    lines.extend(
        _headline_lines(summary.headline, summary.group_names, summary.design["top_fraction"])
    )
    canaries = summary.canaries
    if canaries:
        lines.append(
            f"{canaries['count']} canaries: {100 * canaries['share_in_sets']['top']:.0f}% rank "
            f"in the top {100 * canaries['top_fraction']:g}% most vulnerable samples."
        )
    return lines


def _set_title(key: str, top_fraction: float) -> str:
    """The title of a vulnerable set: ``"top 5%"`` or ``"vulnerable @ 1% FPR"``."""
    if key == "top":
        return f"top {100 * top_fraction:g}%"
    return f"vulnerable @ {_pct(float(key))} FPR"


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


def _statistics_block(stats: dict[str, Any] | None, top_fraction: float) -> dict | None:
    if stats is None:
        return None
    keys = list(stats["sets"])
    return {
        "n": stats["n"],
        "sets": [
            {
                "title": _set_title(k, top_fraction),
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
    top_fraction = summary.design["top_fraction"]
    levels = [
        {
            "level": _pct(level),
            "vulnerable": lv.vulnerable,
            "flagged": lv.flagged_at_least_once,
            "chance": f"{lv.expected_flagged_by_chance:.0f}",
            "mean_tpr": _num(lv.mean_tpr, 4),
            "resolved": lv.resolved,
        }
        for level, lv in summary.vulnerability.levels.items()
    ]
    set_keys = list(summary.statistics["sets"])
    by_class = [
        {
            "cls": row["name"],
            "n": row["n"],
            "mean": _num(row["mean_vulnerability"]),
            "sets": [row["sets"][k] for k in set_keys],
            "rho": _num(row["spearman"].get(summary.link.get("measure") or "", None)),
        }
        for row in summary.per_class
    ]
    context = {
        "summary": summary,
        "brief": analysis_brief(summary),
        "levels": levels,
        "stats": _statistics_block(summary.statistics, top_fraction),
        "natural": _statistics_block(summary.statistics_without_canaries, top_fraction),
        "figures": [
            {**{k: v for k, v in f.items() if k != "png"}, "data": _b64(f["png"])}
            for f in analysis_figures(analysis)
        ],
        "top": summary.top_samples,
        "by_class": by_class,
        "set_titles": [_set_title(k, top_fraction) for k in set_keys],
        "canaries": summary.canaries,
    }
    return render("analysis.html", **context)
