"""The page of a DP audit (self-contained HTML): the accountant's epsilon against each
method's bound, the guess accuracy against abstention, and what the numbers mean."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from mialens.report.environment import render
from mialens.report.format import _b64
from mialens.report.plots import figure_png

CURVE_TITLES = {"dpsgd": "the accountant's DP-SGD curve", "eps_delta": "the (ε, δ)-DP curve"}
METHOD_TITLES = {
    "one_run": "one run (Steinke, Nasr & Jagielski 2023)",
    "one_run_fdp": "one run, f-DP (Mahloujifar, Melis & Chaudhuri 2024)",
    "many_run": "many runs, Clopper-Pearson (Jagielski et al. 2020; Nasr et al. 2021)",
    "gaussian_dp": "Gaussian-DP estimate (Nasr et al. 2023)",
}


def guess_accuracy_png(curve: dict[str, Any], accountant_epsilon: float) -> bytes:
    """Accuracy of the top/bottom guesses against their number r, with the accuracy needed
    at each r to certify the accountant's epsilon."""
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    r = np.asarray(curve["guesses"])
    ax.plot(r, curve["accuracy"], "o-", ms=3, label=f"observed ({curve['score']})")
    needed = curve.get("needed_for") or {}
    accountant = f"{accountant_epsilon:g}"
    palette = iter(("#8e44ad", "#16a085", "#d35400"))
    for level, values in needed.items():
        y = np.array([np.nan if v is None else v for v in values], dtype=float)
        if level == accountant:
            label = f"needed to certify the accountant's ε = {accountant_epsilon:.3g}"
            style = {"ls": "--", "color": "#c0392b"}
        else:
            label, style = f"needed to certify ε = {level}", {"ls": "-.", "color": next(palette)}
        if np.isnan(y).all():
            label += ": out of reach at every r shown"
        ax.plot(r, y, label=label, **style)
    ax.axhline(0.5, color="0.6", ls=":", lw=1, label="chance (accuracy 1/2)")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(0.4, 1.02)
    ax.set_xlabel(f"guesses r (k+ = k− = r/2) of m = {curve['m']} canaries; the rest abstain")
    ax.set_ylabel("accuracy of the guesses")
    ax.set_title(f"Steinke et al.'s test at β = {curve['beta']:g}", fontsize=9)
    fig.legend(loc="outside lower center", fontsize=8, ncols=1)
    return figure_png(fig)


def _selection_text(entry: dict[str, Any]) -> str:
    record = entry.get("selection") or {}
    rule = record.get("rule")
    if rule == "fixed":
        return "k+, k− and the score fixed in advance"
    if rule == "simulated":
        return (
            f"k+ = k− = {record['k']}, the best of {record['candidates']} on "
            f"{record['pilot_games']} simulated runs with ideal canaries (fixed in advance)"
        )
    if rule == "bonferroni":
        return (
            f"best of {record['tests']} tests ({len(record['grid'])} (k+, k−) × "
            f"{len(record['scores'])} scores), each at β / {record['tests']} = "
            f"{record['beta_per_test']:.3g} (Bonferroni)"
        )
    if rule == "split":
        return (
            f"chosen on {record['selection_canaries']} canaries, audited on the other "
            f"{record['audited_canaries']}"
        )
    if rule == "threshold chosen on other runs":
        return (
            f"score and threshold chosen on {record['selection_runs']} runs; one canary of "
            f"each of {record['audited_runs']} other runs is a trial"
        )
    return ""


def method_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per method: its value (bound or estimate), ratio, ceiling and evidence."""
    rows = []
    for name, e in doc["methods"].items():
        estimate = e["kind"] == "estimate"
        rows.append(
            {
                "name": name,
                "title": METHOD_TITLES.get(name, name),
                "estimate": estimate,
                "value": e.get("epsilon_estimate" if estimate else "epsilon_lower"),
                "ratio": e.get("ratio"),
                "ceiling": e.get("ceiling"),
                "guesses": e.get("guesses"),
                "correct": e.get("correct"),
                "m": e.get("m"),
                "beta": e.get("beta"),
                "score": e.get("score"),
                "k": (e["k_plus"], e["k_minus"]) if "k_plus" in e else None,
                "curve": e.get("curve"),
                "selection": _selection_text(e),
                "note": e.get("note"),
            }
        )
    return rows


def render_dp_audit(doc: dict[str, Any]) -> str:
    """The self-contained HTML page of a DP audit."""
    return render(
        "dp_audit.html",
        doc=doc,
        rows=method_rows(doc),
        curves=CURVE_TITLES,
        plot=_b64(guess_accuracy_png(doc["guess_accuracy"], doc["accountant_epsilon"])),
    )
