"""The result of a DP audit: one epsilon (a lower bound or an estimate) and its evidence."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from mialens.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class DPAuditResult:
    """One method's epsilon from canary scores.

    ``kind="bound"``: ``epsilon_lower`` is a valid (1 - ``beta``) lower bound on the epsilon
    of an (epsilon, ``delta``)-DP mechanism; ``ceiling`` is the largest value that ``guesses``
    all correct could certify. ``kind="estimate"``: a point estimate, not held to coverage
    (``beta`` and ``ceiling`` are None); :meth:`to_json` names it ``epsilon_estimate``.
    """

    method: str
    epsilon_lower: float
    beta: float | None
    delta: float
    m: int
    guesses: int
    correct: int
    ceiling: float | None
    kind: Literal["bound", "estimate"] = "bound"

    def to_json(self) -> dict[str, Any]:
        name = "epsilon_lower" if self.kind == "bound" else "epsilon_estimate"
        return {
            "method": self.method,
            "kind": self.kind,
            name: self.epsilon_lower,
            "beta": self.beta,
            "delta": self.delta,
            "m": self.m,
            "guesses": self.guesses,
            "correct": self.correct,
            "ceiling": self.ceiling,
        }


def check_level(name: str, value: float, *, zero_allowed: bool = False) -> float:
    """``value`` as a float in (0, 1) (or [0, 1) if ``zero_allowed``), else a ConfigError."""
    value = float(value)
    low_ok = value >= 0.0 if zero_allowed else value > 0.0
    if math.isnan(value) or not low_ok or value >= 1.0:
        interval = "[0, 1)" if zero_allowed else "(0, 1)"
        raise ConfigError(f"{name} must lie in {interval}, got {value}.")
    return value
