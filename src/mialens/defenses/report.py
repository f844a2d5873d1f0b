"""The privacy-utility page of a defence evaluation (self-contained HTML)."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def privacy_utility_png(report: dict[str, Any]) -> bytes:
    """Test accuracy against the strongest attack's TPR at the report's FPR level."""
    level = report["privacy_level"]
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for name, e in report["defenses"].items():
        t = e["tpr_at_fpr"][level]
        err = np.array([[max(t["value"] - t["ci_low"], 0)], [max(t["ci_high"] - t["value"], 0)]])
        ax.errorbar(e["test_acc"], t["value"], yerr=err, fmt="o", capsize=3)
        ax.annotate(
            name, (e["test_acc"], t["value"]), fontsize=8, xytext=(4, 3), textcoords="offset points"
        )
    ax.axhline(float(level), color="0.6", ls=":", lw=1, label="chance (TPR = FPR)")
    ax.set_xlabel("test accuracy (mean over targets)")
    ax.set_ylabel(f"TPR at FPR {level} (strongest attack)")
    ax.legend(loc="best", fontsize=8)
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    return buf.getvalue()


def render_defenses(report: dict[str, Any]) -> str:
    """The self-contained HTML page of a defence evaluation."""
    env = Environment(loader=PackageLoader("mialens.defenses", "templates"), autoescape=True)
    levels = (
        list(next(iter(report["defenses"].values()))["tpr_at_fpr"]) if report["defenses"] else []
    )
    return env.get_template("defenses.html").render(
        level=report["privacy_level"],
        levels=levels,
        rows=list(report["defenses"].items()),
        comparison=report["sample_aware_vs_uniform"],
        monitor=report.get("monitor"),
        plot=base64.b64encode(privacy_utility_png(report)).decode("ascii"),
    )
