"""Membership-inference attacks: one module per family, one contract (declared needs;
fit, prepare, score; see :mod:`mialens.attacks.base`)."""

from mialens.attacks.base import (
    Attack,
    ModelSignals,
    Needs,
    QueryAttack,
    QueryData,
    QueryReferences,
    ReferenceSignals,
    SignalAttack,
    TargetSignals,
)
from mialens.attacks.registry import ATTACKS, DEFAULT_ATTACKS, attack_class, build_attack
from mialens.signals.statistics import SignalSpec

__all__ = [
    "ATTACKS",
    "DEFAULT_ATTACKS",
    "Attack",
    "ModelSignals",
    "Needs",
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
