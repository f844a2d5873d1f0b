"""The attack registry: name -> attack class, and construction from configuration.

Each attack's module is imported when its class is first asked for, so that an audit of
the score-based attacks does not load the PyTorch ones (and PyTorch)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any

from mialens.attacks.base import Attack
from mialens.errors import ConfigError, unknown_name

_ATTACK_CLASSES: tuple[tuple[str, str, str], ...] = (
    ("loss", "threshold", "LossAttack"),
    ("confidence", "threshold", "ConfidenceAttack"),
    ("entropy", "threshold", "EntropyAttack"),
    ("mentr", "threshold", "ModifiedEntropyAttack"),
    ("attack_p", "loss_percentile", "AttackP"),
    ("attack_r", "loss_percentile", "AttackR"),
    ("lira_online", "lira", "LiRAOnline"),
    ("lira_offline", "lira", "LiRAOffline"),
    ("rmia_online", "rmia", "RMIAOnline"),
    ("rmia_offline", "rmia", "RMIAOffline"),
    ("gap", "label_only", "GapAttack"),
    ("augmentation", "label_only", "AugmentationAttack"),
    ("boundary", "boundary", "BoundaryAttack"),
    ("transfer", "transfer", "TransferAttack"),
    ("yoqo", "yoqo", "YOQOAttack"),
    ("gradient_norm", "whitebox", "GradientNormAttack"),
    ("nasr", "whitebox", "NasrAttack"),
    ("shokri", "shadow", "ShokriAttack"),
    ("ml_leaks", "shadow", "MLLeaksAttack"),
    ("ml_leaks_transfer", "shadow", "MLLeaksTransferAttack"),
    ("trajectory", "trajectory", "TrajectoryMIA"),
    ("seqmia", "trajectory", "SeqMIA"),
    ("quantile", "quantile", "QuantileAttack"),
)
"""Every registered attack: its name, its module in :mod:`mialens.attacks` and its class."""


class AttackRegistry(MutableMapping[str, type[Attack]]):
    """Attack classes by name, in registration order; a class's module is imported on
    first access (``registry[name]``, iteration of values or items)."""

    def __init__(self, entries: tuple[tuple[str, str, str], ...]) -> None:
        self._entries: dict[str, type[Attack] | tuple[str, str]] = {
            name: (module, cls) for name, module, cls in entries
        }

    def __getitem__(self, name: str) -> type[Attack]:
        entry = self._entries[name]
        if isinstance(entry, tuple):
            module, cls = entry
            entry = getattr(importlib.import_module(f"mialens.attacks.{module}"), cls)
            self._entries[name] = entry
        return entry

    def __setitem__(self, name: str, cls: type[Attack]) -> None:
        self._entries[name] = cls

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


ATTACKS: MutableMapping[str, type[Attack]] = AttackRegistry(_ATTACK_CLASSES)

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
