"""The text analysis page (``analysis/report.html`` of a text audit): the most vulnerable
texts with their words, which measure group predicts vulnerability, and the canaries."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mialens.report.format import _b64, _num, _p, _pct
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


def _pool_canaries(canaries: dict[str, Any]) -> str:
    auc = canaries["vulnerability_auc"]
    shares = ", ".join(
        f"{k}: {100 * v:.0f}% of canaries vs {100 * canaries['natural_share_in_sets'][k]:.0f}% "
        "of natural texts"
        for k, v in canaries["share_in_sets"].items()
    )
    return (
        f"<p>{canaries['count']} canary copies in the pool (sample ids starting with "
        f"<code>canary-</code>). In the vulnerable sets: {shares}. Median rank "
        f"percentile {100 * canaries['median_rank_percentile']:.0f}%; AUC of vulnerability "
        f"for canaries vs natural texts {_num(auc['auc'])} [{_num(auc['ci_low'])}, "
        f"{_num(auc['ci_high'])}].</p>"
    )


def _tpr_cells(tpr: dict[str, Any] | None, natural: bool) -> str:
    """A row's two cells at one FPR level, TPR [95%] and untrained canaries accepted: of a
    canary repetition (canaries.json) or of the natural texts (metrics.json)."""
    if tpr is None:
        source = "metrics.json" if natural else "canaries.json"
        return f"<td colspan=2>not measured at this level ({source})</td>"
    if natural:
        value = f"<b>{_num(tpr['mean'], 2)}</b>"
        note = "" if tpr["valid"] else " (not resolved or tied)"
        accepted = "at most the level"
    else:
        value = _num(tpr["tpr"], 2)
        note = "" if tpr["resolved"] else " (not resolved)"
        note += f"<br><small>{tpr['n_trained']} pairs</small>"
        accepted = _num(tpr["out_canary_fpr"], 2)
    return (
        f"<td class=num>{value} [{_num(tpr['ci_low'], 2)}, {_num(tpr['ci_high'], 2)}]{note}"
        f"</td><td class=num>{accepted}</td>"
    )


def _inserted_table(c: dict[str, Any]) -> str:
    levels = list(c["natural_tpr"])
    head = "".join(
        f"<th>TPR at FPR {_pct(float(k))} [95%]</th><th>untrained canaries accepted at "
        f"FPR {_pct(float(k))}</th>"
        for k in levels
    )
    rows = [
        f"<tr class=canary><td>canaries inserted {r['repetitions']}x</td>"
        f"<td class=num>{r['canaries']}</td><td class=num>{_num(r['exposure_trained'], 2)}</td>"
        f"<td class=num>{_num(r['exposure_untrained'], 2)}</td>"
        + "".join(_tpr_cells(r["tpr"][k], natural=False) for k in levels)
        + "</tr>"
        for r in c["by_repetition"]
    ]
    rows.append(
        f"<tr><td>natural texts</td><td class=num>{c['natural_texts']}</td><td>-</td><td>-</td>"
        + "".join(_tpr_cells(c["natural_tpr"][k], natural=True) for k in levels)
        + "</tr>"
    )
    return (
        "<table><tr><th>texts</th><th>count</th><th>mean exposure, targets that trained it "
        f"(bits)</th><th>mean exposure, other targets (bits)</th>{head}</tr>{''.join(rows)}"
        "</table>"
    )


def _inserted(c: dict[str, Any]) -> str:
    fallback = f" ({html.escape(c['attack_fallback'])})" if c["attack_fallback"] else ""
    pool = _pool_canaries(c["pool"]) if c["pool"] else ""
    return (
        f"<p>The audit inserted {c['count']} secret-sharer canaries ({c['copies']} copies) into "
        "the training halves; they are measured apart from the natural texts (not in "
        "samples.csv nor the headline metrics) and read here from <code>canaries.json</code>. "
        f"TPR of the attack <b>{c['attack']}</b>{fallback}: for canaries, the share of "
        "(canary, target that trained it) pairs above each target's threshold set on its "
        "natural non-members, with the 95% Student-t interval over targets of the "
        "per-target TPR; for natural texts, the mean over targets of the TPR on the natural "
        "pool with its 95% Student-t interval. The untrained-canary column is the share of "
        "(canary, target that did not train it) pairs the same thresholds accept: far above "
        "the FPR level, the attack also flags canaries it never saw.</p>"
        f"{_inserted_table(c)}{pool}"
    )


def _canaries(canaries: dict[str, Any]) -> str:
    if canaries["source"] == "canaries.json":
        return _inserted(canaries)
    if canaries["source"] == "pool":
        return _pool_canaries(canaries)
    if canaries["inserted"]:
        return (
            "<p>This audit inserted canaries (<code>audit.canaries</code>) but no "
            "<code>canaries.json</code> was given to this analysis; <code>mialens analyze "
            "RUN</code> reads <code>RUN/canaries.json</code>, which <code>mialens audit</code> "
            "writes.</p>"
        )
    return (
        "<p>This audit inserted no canaries (no <code>audit.canaries</code> section), and no "
        "pool sample id starts with <code>canary-</code>.</p>"
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
    lines.extend(_canary_brief(summary["canaries"]))
    return lines


def _canary_brief(c: dict[str, Any]) -> list[str]:
    if c["source"] == "pool":
        auc = c["vulnerability_auc"]["auc"]
        return [f"canaries in the pool: {c['count']}, vulnerability AUC {_num(auc)}"]
    if c["source"] is None:
        return []
    top = max(c["by_repetition"], key=lambda r: r["repetitions"])
    at = ", ".join(
        f"{_num(rate['tpr'], 2) if (rate := top['tpr'][k]) else 'n/a'} vs natural "
        f"{_num(nat['mean'], 2) if (nat := c['natural_tpr'][k]) else 'n/a'} at FPR {_pct(float(k))}"
        for k in c["natural_tpr"]
    )
    return [
        f"canaries (canaries.json): {c['count']}; inserted {top['repetitions']}x, "
        f"{c['attack']} TPR {at}"
    ]
