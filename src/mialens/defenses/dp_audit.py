"""What a defence evaluation may say about epsilon: the ``dp_audit`` entry of defenses.json.

A defence's membership audit trains its models on complementary halves of the pool: each
sample is IN for exactly half of the models and its inclusion is paired with others'. The
inclusions are not independent fair coins, so neither the one-run bounds (Steinke, Nasr &
Jagielski 2023, Theorem 3, which need each canary included independently with probability
1/2) nor Clopper-Pearson over trials (which needs independent trials) hold on those scores:
no number from them is a valid epsilon bound. A valid bound needs canaries included
independently, in a run of its own (:mod:`mialens.workflows.dp_audit`), which
``mialens defend`` plays for DP-SGD defences when the configuration has a ``dp_audit:``
section. Every other defence gets the reason instead of a number.
"""

from __future__ import annotations

from typing import Any

PAIRED = (
    "its membership audit trains models on complementary halves of the pool, so inclusions "
    "are paired, not independent: no valid epsilon bound follows from its scores"
)
NOT_DP = f"not trained with DP-SGD (no accountant's epsilon to audit); {PAIRED}"
NOT_CONFIGURED = (
    f"{PAIRED}; add a dp_audit: section to audit this DP-SGD defence with independently "
    "included canaries"
)


def without_bound(dp_sgd: bool) -> dict[str, Any]:
    """The entry of a defence not audited with independently included canaries."""
    return {"valid": False, "reason": NOT_CONFIGURED if dp_sgd else NOT_DP}


def with_bounds(doc: dict[str, Any], report: str) -> dict[str, Any]:
    """The entry of a DP-SGD defence audited with independent canaries, from its
    ``dp_audit.json`` document ``doc``; ``report`` is the path of its page."""
    bounds = {
        name: {
            "method": e["method"],
            "epsilon_lower": e["epsilon_lower"],
            "ratio": e["ratio"],
            "ceiling": e["ceiling"],
            "beta": e["beta"],
        }
        for name, e in doc["methods"].items()
        if e["kind"] == "bound"
    }
    return {
        "valid": True,
        "what": f"one-run audit with {doc['canaries']['m']} {doc['canaries']['kind']} canaries, "
        "each included independently with probability 1/2",
        "accountant_epsilon": doc["accountant_epsilon"],
        "delta": doc["delta"],
        "bounds": bounds,  # each at its own beta: their maximum is not a bound at beta
        "report": report,
    }
