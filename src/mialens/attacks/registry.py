"""The attack registry: name -> attack class, and construction from configuration."""

from __future__ import annotations

from typing import Any

from mialens.attacks.base import Attack
from mialens.attacks.boundary import BoundaryAttack
from mialens.attacks.label_only import AugmentationAttack, GapAttack
from mialens.attacks.lira import LiRAOffline, LiRAOnline
from mialens.attacks.loss_percentile import AttackP, AttackR
from mialens.attacks.quantile import QuantileAttack
from mialens.attacks.rmia import RMIAOffline, RMIAOnline
from mialens.attacks.shadow import MLLeaksAttack, MLLeaksTransferAttack, ShokriAttack
from mialens.attacks.threshold import (
    ConfidenceAttack,
    EntropyAttack,
    LossAttack,
    ModifiedEntropyAttack,
)
from mialens.attacks.trajectory import SeqMIA, TrajectoryMIA
from mialens.attacks.transfer import TransferAttack
from mialens.attacks.whitebox import GradientNormAttack, NasrAttack
from mialens.attacks.yoqo import YOQOAttack
from mialens.errors import ConfigError, unknown_name

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls
    for cls in (
        LossAttack,
        ConfidenceAttack,
        EntropyAttack,
        ModifiedEntropyAttack,
        AttackP,
        AttackR,
        LiRAOnline,
        LiRAOffline,
        RMIAOnline,
        RMIAOffline,
        GapAttack,
        AugmentationAttack,
        BoundaryAttack,
        TransferAttack,
        YOQOAttack,
        GradientNormAttack,
        NasrAttack,
        ShokriAttack,
        MLLeaksAttack,
        MLLeaksTransferAttack,
        TrajectoryMIA,
        SeqMIA,
        QuantileAttack,
    )
}

DEFAULT_ATTACKS: tuple[str, ...] = (
    "loss",
    "confidence",
    "entropy",
    "mentr",
    "attack_p",
    "attack_r",
    "lira_online",
    "lira_offline",
    "rmia_online",
    "rmia_offline",
)
"""The score-based attacks an audit runs unless told otherwise."""


def attack_class(name: str) -> type[Attack]:
    """The attack class registered as ``name``."""
    if name not in ATTACKS:
        raise unknown_name("attack", name, list(ATTACKS))
    return ATTACKS[name]


def build_attack(spec: str | dict[str, Any]) -> Attack:
    """An attack from a name or a mapping ``{name: ..., **params}``."""
    if isinstance(spec, str):
        return attack_class(spec)()
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"an attack is a name or a mapping with a 'name' key; got {spec!r}")
    params = {k: v for k, v in spec.items() if k != "name"}
    return attack_class(spec["name"])(**params)
