"""The privacy-utility page of a defence evaluation (self-contained HTML)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mialens.report.environment import render
from mialens.report.format import _b64
from mialens.report.plots import figure_png


def comparable_groups(report: dict[str, Any]) -> list[tuple[tuple[str, ...], list[str]]]:
    """The defences grouped by the undefended model's attacks their audit left out: the
    group ``()`` ran every attack; each other group gets its own panel, against the
    undefended model restricted to the same attacks."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, e in report["defenses"].items():
        groups.setdefault(tuple(e.get("missing_attacks", ())), []).append(name)
    return sorted(groups.items(), key=lambda g: len(g[0]))


def _point(ax, x: float, t: dict[str, Any], label: str, **style) -> None:
    low, high = max(t["ci_low"], 0.0), min(t["ci_high"], 1.0)  # a TPR lies in [0, 1]
    err = np.array([[max(t["value"] - low, 0)], [max(high - t["value"], 0)]])
    ax.errorbar(x, t["value"], yerr=err, capsize=3, **style)
    ax.annotate(label, (x, t["value"]), fontsize=8, xytext=(4, 3), textcoords="offset points")


def privacy_utility_png(report: dict[str, Any]) -> bytes:
    """Test accuracy against the strongest attack's TPR at the report's FPR level, one
    panel per set of attacks (defences audited with fewer attacks than the undefended
    model are never drawn on its axis)."""
    level = report["privacy_level"]
    groups = comparable_groups(report)
    cols = min(len(groups), 2)
    rows = math.ceil(len(groups) / cols)
    fig = Figure(figsize=(5.6 * cols, 4.2 * rows), layout="constrained")
    for i, (missing, names) in enumerate(groups):
        ax = fig.add_subplot(rows, cols, i + 1)
        for name in names:
            e = report["defenses"][name]
            _point(ax, e["test_acc"], e["tpr_at_fpr"][level], name, fmt="o")
        if missing:
            first = report["defenses"][names[0]]
            base = report["defenses"].get("undefended")
            if base is not None and first.get("undefended_same_attacks"):
                same = first["undefended_same_attacks"][level]
                label = "undefended (same attacks)"
                _point(ax, base["test_acc"], same, label, fmt="s", mfc="none", color="0.3")
            ax.set_title(f"audited without {', '.join(missing)}", fontsize=9)
        else:
            ax.set_title("audited with every attack of the undefended model", fontsize=9)
        ax.margins(x=0.25)  # room for the labels
        ax.axhline(float(level), color="0.6", ls=":", lw=1, label="chance (TPR = FPR)")
        ax.set_xlabel("test accuracy (mean over targets)")
        ax.set_ylabel(f"TPR at FPR {level} (strongest attack)")
        ax.legend(loc="best", fontsize=8)
    return figure_png(fig)


def dp_audit_reasons(report: dict[str, Any]) -> list[str]:
    """The distinct reasons, in row order, why defences have no valid epsilon bound."""
    reasons = [e["dp_audit"].get("reason") for e in report["defenses"].values()]
    return list(dict.fromkeys(r for r in reasons if r is not None))


def render_defenses(report: dict[str, Any]) -> str:
    """The self-contained HTML page of a defence evaluation."""
    levels = (
        list(next(iter(report["defenses"].values()))["tpr_at_fpr"]) if report["defenses"] else []
    )
    return render(
        "defenses.html",
        level=report["privacy_level"],
        levels=levels,
        rows=list(report["defenses"].items()),
        comparison=report["sample_aware_vs_uniform"],
        monitor=report.get("monitor"),
        reasons=dp_audit_reasons(report),
        plot=_b64(privacy_utility_png(report)),
    )
