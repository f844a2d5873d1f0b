"""The text analysis page (``analysis/report.html`` of a text audit): the most vulnerable
texts with their words, which measure group predicts vulnerability, and the canaries."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mialens.report.format import _b64, _num, _p
from mialens.report.plots import figure_png

_STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .5em;
text-align:left;vertical-align:top}th{background:#f3f3f3}.num{text-align:right}
.canary{background:#fff3cd}img{max-width:100%}"""


def _auc_png(entries: dict[str, Any], set_name: str) -> bytes:
    names = [k for k, e in entries.items() if e["auc"] is not None]
    fig = Figure(figsize=(6.5, 0.5 + 0.45 * max(1, len(names))))
    ax = fig.add_subplot()
    auc = np.array([entries[k]["auc"] for k in names])
    low = np.array([entries[k]["ci_low"] for k in names])
    high = np.array([entries[k]["ci_high"] for k in names])
    y = np.arange(len(names))
    ax.errorbar(auc, y, xerr=[auc - low, high - auc], fmt="o", capsize=3)
    ax.axvline(0.5, color="grey", linestyle="--", label="chance (0.5)")
    ax.set_yticks(y, names)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"AUC for the vulnerable set '{set_name}' (95% DeLong interval)")
    ax.set_title("Which measure tells the vulnerable texts apart")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return figure_png(fig)


def _histogram_png(vulnerability: np.ndarray, chance: float) -> bytes:
    fig = Figure(figsize=(6.5, 3))
    ax = fig.add_subplot()
    ax.hist(vulnerability, bins=30, color="#4477aa")
    ax.axvline(chance, color="grey", linestyle="--", label=f"chance ({chance:.3f})")
    ax.set_xlabel("vulnerability (mean -log10 detection p-value over IN targets)")
    ax.set_ylabel("texts")
    ax.set_title("Per-sample vulnerability")
    ax.legend()
    fig.tight_layout()
    return figure_png(fig)


def _headline_rows(headline: dict[str, Any], names: dict[str, str]) -> str:
    rows = []
    for group, g in headline["groups"].items():
        if g is None:
            rows.append(f"<tr><td>{group}</td><td colspan=5>no measure with an AUC</td></tr>")
            continue
        verdict = "yes" if g["predicts"] else "no"
        rows.append(
            f"<tr><td>{group}: {html.escape(names[group])}</td><td>{g['measure']}</td>"
            f"<td class=num>{_num(g['auc'])} [{_num(g['ci_low'])}, {_num(g['ci_high'])}]</td>"
            f"<td class=num>{_p(g['p_holm'])}</td><td class=num>{_num(g['spearman_rho'])}</td>"
            f"<td>{verdict}</td></tr>"
        )
    return "".join(rows)


def _top_rows(top: list[dict[str, Any]]) -> str:
    rows = []
    for r in top:
        cls = " class=canary" if r["canary"] else ""
        rows.append(
            f"<tr{cls}><td class=num>{r['rank']}</td><td>{html.escape(str(r['sample_id']))}"
            f"{' (canary)' if r['canary'] else ''}</td><td>{html.escape(str(r['text']))}</td>"
            f"<td class=num>{_num(r['vulnerability_tail'], 2)}</td>"
            f"<td class=num>{_num(r['vulnerability'])} [{_num(r['vulnerability_low'])}, "
            f"{_num(r['vulnerability_high'])}]</td><td class=num>{_num(r['mean_idf'], 2)}</td>"
            f"<td class=num>{r['tokens']}</td><td class=num>{r['group_size']}</td>"
            f"<td class=num>{_num(r['out_token_loss'], 2)}</td></tr>"
        )
    return "".join(rows)


def _canaries(canaries: dict[str, Any] | None) -> str:
    if canaries is None:
        return "<p>No canaries in the pool (no sample id starts with <code>canary-</code>).</p>"
    auc = canaries["vulnerability_auc"]
    shares = ", ".join(
        f"{k}: {100 * v:.0f}% of canaries vs {100 * canaries['natural_share_in_sets'][k]:.0f}% "
        "of natural texts"
        for k, v in canaries["share_in_sets"].items()
    )
    return (
        f"<p>{canaries['count']} canary copies. In the vulnerable sets: {shares}. Median rank "
        f"percentile {100 * canaries['median_rank_percentile']:.0f}%; AUC of vulnerability "
        f"for canaries vs natural texts {_num(auc['auc'])} [{_num(auc['ci_low'])}, "
        f"{_num(auc['ci_high'])}].</p>"
    )


def render_text_analysis(summary: dict[str, Any], vulnerability: np.ndarray) -> str:
    """The page of a text analysis ``summary`` (``analysis/summary.json``) and the
    per-sample ``vulnerability``."""
    head, vs = summary["headline"], summary["vulnerability"]
    entries = summary["statistics"]["sets"].get(head["set"], {}).get("measures", {})
    levels = "; ".join(
        f"FPR {k}: {v['vulnerable']} vulnerable (flagged at least once: "
        f"{v['flagged_at_least_once']}, by chance expected {v['expected_flagged_by_chance']:.1f})"
        for k, v in vs["levels"].items()
    )
    auc_png = _b64(_auc_png(entries, head["set"])) if entries else ""
    auc_fig = (
        f'<img alt="AUC per measure" src="data:image/png;base64,{auc_png}">'
        if entries
        else f"<p>The set '{head['set']}' is too small for statistics.</p>"
    )
    hist = _b64(_histogram_png(vulnerability, vs["chance"]))
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>mialens text analysis: {html.escape(summary["dataset"])}</title><style>{_STYLE}</style>
</head><body><h1>Which texts leak: {html.escape(summary["dataset"])}</h1>
<p>{summary["samples"]} pool texts, {summary["targets"]} target LMs; vulnerability from the
attack <b>{summary["attack"]}</b> ({html.escape(summary["attack_choice"])}). Mean
vulnerability {_num(vs["mean"])} (chance {_num(vs["chance"])}); {vs["above_chance"]} texts
with their 95% interval above chance. {levels}.</p>
<img alt="vulnerability histogram" src="data:image/png;base64,{hist}">
<h2>Which measure group predicts the vulnerable set '{head["set"]}'</h2>
<table><tr><th>group</th><th>best measure</th><th>AUC [95% DeLong]</th><th>Holm p</th>
<th>Spearman rho</th><th>predicts</th></tr>{_headline_rows(head, summary["group_names"])}</table>
{auc_fig}
<h2>Most vulnerable texts</h2>
<table><tr><th>rank</th><th>id</th><th>text</th><th>tail vuln.</th><th>vulnerability [95%]</th>
<th>mean IDF</th><th>tokens</th><th>group size</th><th>OUT token loss</th></tr>
{_top_rows(summary["top"])}</table>
<h2>Canaries</h2>{_canaries(summary["canaries"])}
</body></html>
"""


def text_analysis_brief(summary: dict[str, Any]) -> list[str]:
    """The lines `mialens analyze` prints for a text analysis."""
    head, vs = summary["headline"], summary["vulnerability"]
    lines = [
        f"vulnerability to {summary['attack']}: mean {vs['mean']:.3f} (chance "
        f"{vs['chance']:.3f}), {vs['above_chance']} of {summary['samples']} texts above chance"
    ]
    if all(g is None for g in head["groups"].values()):
        lines.append(
            f"no vulnerable set holds 10 texts and 10 others (set {head['set']}): no link "
            "statistics; raise analysis.top_fraction"
        )
    for group, g in head["groups"].items():
        if g is not None:
            lines.append(
                f"{group} measures: best {g['measure']}, AUC {g['auc']:.3f} [{g['ci_low']:.3f}, "
                f"{g['ci_high']:.3f}] for set {head['set']}, Holm p {_p(g['p_holm'])}"
            )
    if summary["canaries"] is not None:
        auc = summary["canaries"]["vulnerability_auc"]["auc"]
        lines.append(f"canaries: {summary['canaries']['count']}, vulnerability AUC {_num(auc)}")
    return lines
