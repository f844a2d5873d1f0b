"""The report's section on a text audit's secret-sharer canaries (from the brief of
:func:`~mialens.audit.text_canaries.canary_brief`)."""

from __future__ import annotations

import math
from typing import Any

from mialens.report.format import _num


def _value(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else _num(value, digits)


def _interval(difference: dict[str, Any]) -> str:
    if "error" in difference:
        return difference["error"]
    low, high = _value(difference["ci_low"]), _value(difference["ci_high"])
    return f"{_value(difference['mean'])} [{low}, {high}] over {difference['n']} targets"


def secret_canary_section(brief: dict[str, Any] | None) -> dict[str, Any] | None:
    """Rows of the canary table: repetition count, mean exposure of trained and untrained
    canaries, the attack's canary TPR at 1% FPR, and per canary the share of the targets
    that trained it whose 1%-FPR threshold it passes; then the paired differences."""
    if brief is None:
        return None
    rows = [
        {
            "repetitions": row["repetitions"],
            "canaries": row["canaries"],
            "exposure_in": _value(row["exposure_in"]),
            "exposure_out": _value(row["exposure_out"]),
            "tpr": _value(row["tpr_at_1%"]),
            "tpr_ci": " – ".join(_value(v) for v in row["tpr_at_1%_per_target_ci"]),
            "shares": " ".join(_value(v) for v in row["share_of_targets_at_1%"]),
        }
        for row in brief["by_repetition"]
    ]
    differences = [
        {"label": f"{d['larger']}× − {d['smaller']}×", "value": _interval(d)}
        for d in brief["differences"]
    ]
    return {**brief, "rows": rows, "difference_rows": differences}
