"""Membership-inference attacks: one module per family, one interface (fit, score)."""

from mialens.attacks.base import (
    Attack,
    QueryAttack,
    QueryData,
    QueryReferences,
    ReferenceSignals,
    SignalAttack,
    SignalSpec,
    TargetSignals,
)
from mialens.attacks.registry import ATTACKS, DEFAULT_ATTACKS, attack_class, build_attack

__all__ = [
    "ATTACKS",
    "DEFAULT_ATTACKS",
    "Attack",
    "QueryAttack",
    "QueryData",
    "QueryReferences",
    "ReferenceSignals",
    "SignalAttack",
    "SignalSpec",
    "TargetSignals",
    "attack_class",
    "build_attack",
]
