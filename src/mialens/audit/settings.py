"""The audit's section models: its design (:class:`AuditSettings`) and the recipe of what
is audited (:class:`AuditSpec`: data, architecture, training, design and executor)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mialens.attacks.base import Attack
from mialens.attacks.registry import DEFAULT_ATTACKS, build_attack
from mialens.audit.canaries import CanaryConfig
from mialens.audit.executor import ExecutorConfig
from mialens.data.registry import DatasetConfig
from mialens.models.model_config import ModelConfig
from mialens.models.recipe import TrainConfig
from mialens.signals.queries import QueryConfig
from mialens.validation import check_fpr_levels

AttackSpec = str | dict[str, Any]
_GRADIENTS_OF_REFERENCES = ("yoqo",)
"""Attacks that are not white-box against the target but craft their queries with
gradients of the reference models (YOQO), so need PyTorch models too."""


def build_attacks(specs: Sequence[AttackSpec]) -> list[Attack]:
    """Fresh, unfitted attacks of ``specs`` (names or mappings ``{name: ..., **params}``),
    in order; a bad spec raises a ConfigError naming the problem. The one place the
    configuration's attack specs become attacks."""
    return [build_attack(spec) for spec in specs]


@dataclass(frozen=True)
class AttackDeclaration:
    """What a listed attack declares, read from its built object: its name, the reference
    models it uses (``attack.needs.references``) and its threat model."""

    name: str
    references: str
    threat_model: str


def declare_attacks(specs: Sequence[AttackSpec]) -> tuple[AttackDeclaration, ...]:
    """The declarations of the attacks of ``specs``, in order (each attack built once)."""
    return tuple(
        AttackDeclaration(a.name, a.needs.references, a.threat_model) for a in build_attacks(specs)
    )


class AuditSettings(BaseModel):
    """Experimental design, attacks and metrics of an audit."""

    model_config = ConfigDict(extra="forbid")

    num_models: int = Field(
        default=16,
        ge=2,
        description="models trained on complementary halves of the pool; each is attacked "
        "in turn with the others as reference models",
    )
    seed: int = Field(default=0, ge=0, description="controls splits, training and bootstrap")
    pool_size: int | None = Field(
        default=None, ge=4, description="audit pool size (default: 70% of the data)"
    )
    val_size: int | None = Field(
        default=None,
        ge=0,
        description="validation samples outside the pool, for early stopping (default: 20% of "
        "the samples outside the pool when early stopping is on, else 0)",
    )
    test_size: int | None = Field(
        default=None, ge=1, description="held-out test samples for utility (default: the rest)"
    )
    population_size: int | None = Field(
        default=None,
        ge=1,
        description="population samples for Attack-P and RMIA, drawn from the test set "
        "(default: the whole test set)",
    )
    attacks: list[AttackSpec] = Field(
        default_factory=lambda: list(DEFAULT_ATTACKS),
        description="attack names, or mappings {name: ..., <parameter>: ...}",
    )
    fpr: list[float] = Field(
        default_factory=lambda: [0.1, 0.01, 0.001, 0.0001],
        description="false-positive rates at which to report the TPR",
    )
    bootstrap: int = Field(default=200, ge=0, description="bootstrap replicates (0: none)")
    queries: QueryConfig | None = Field(
        default=None, description="query augmentations (default: those of train.augment)"
    )
    device: str = Field(default="cpu", description="torch device for training and queries")
    cache_dir: Path | None = Field(
        default=None,
        description="model and signal cache (default: $MIALENS_CACHE_DIR or ~/.cache/mialens)",
    )
    canaries: CanaryConfig | None = Field(
        default=None,
        description="replace part of the pool by canaries (Aerni et al. 2024), e.g. "
        "{kind: mislabel, fraction: 0.02}",
    )

    def build_attacks(self) -> list[Attack]:
        """Fresh, unfitted attacks of ``attacks``, in order (each audit fits its own)."""
        return build_attacks(self.attacks)

    def declared_attacks(self) -> tuple[AttackDeclaration, ...]:
        """The declarations of ``attacks``, in order."""
        return declare_attacks(self.attacks)

    @property
    def attack_names(self) -> list[str]:
        """The names of ``attacks``, in order."""
        return [a.name for a in self.declared_attacks()]

    @field_validator("num_models")
    @classmethod
    def _even(cls, k: int) -> int:
        if k % 2:
            raise ValueError(
                f"must be even (models come in complementary pairs so that every sample "
                f"trains exactly half of them); got {k}"
            )
        return k

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        return check_device(device)

    @field_validator("fpr")
    @classmethod
    def _rates(cls, rates: list[float]) -> list[float]:
        return check_fpr_levels(rates)

    @field_validator("attacks")
    @classmethod
    def _attacks(cls, specs: list[AttackSpec]) -> list[AttackSpec]:
        if not specs:
            raise ValueError("list at least one attack (see `mialens attacks`)")
        names = [a.name for a in declare_attacks(specs)]  # a ConfigError names a bad spec
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"attacks listed twice: {sorted(dup)}")
        return specs

    @model_validator(mode="after")
    def _enough_models(self) -> AuditSettings:
        for attack in self.declared_attacks():
            if attack.references != "none" and self.num_models < 4:
                raise ValueError(
                    f"attack {attack.name!r} needs num_models >= 4 (every sample must be left "
                    "out of at least one reference model besides the target, and online "
                    "attacks also need it to train one)"
                )
        return self


def check_device(device: str) -> str:
    """``device`` if torch parses it and this machine has it, else a ValueError saying why."""
    if device == "cpu":  # every machine has it (and checking needs no PyTorch)
        return device
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"{device!r} is not a torch device; use cpu, cuda, cuda:N or mps "
            "(e.g. --set audit.device=cpu)"
        ) from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"{device!r} asks for CUDA, which this machine does not have (torch "
                f"{torch.__version__}); run on the CPU with --set audit.device=cpu"
            )
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(
                f"{device!r}: this machine has {count} CUDA device(s), cuda:0 to "
                f"cuda:{count - 1}; use one of them (or --set audit.device=cpu)"
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"{device!r}: Apple MPS is not available on this machine; run on the CPU with "
            "--set audit.device=cpu"
        )
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{device!r}: mialens runs on cpu, cuda or mps")
    return device


def check_executor_device(executor: ExecutorConfig, device: str) -> None:
    """A ValueError when Ray's GPU reservations do not fit ``device``: a Ray task that
    reserves no GPU sees none (Ray empties its ``CUDA_VISIBLE_DEVICES``), one that reserves
    GPUs sees only its own, numbered from ``cuda:0``, and GPUs reserved for tasks on the
    CPU sit idle (and on a cluster without GPUs the tasks would wait for them forever)."""
    if executor.kind != "ray":
        return
    kind, _, index = device.partition(":")
    if kind == "cuda" and executor.num_gpus == 0:
        raise ValueError(
            "audit.device: cuda on Ray needs executor.num_gpus > 0 (e.g. 1, or 0.25 for four "
            "tasks per GPU): Ray hides every GPU from a task that reserves none"
        )
    if kind == "cuda" and index not in ("", "0"):
        raise ValueError(
            f"audit.device: {device} on Ray: each task sees only the GPUs Ray gives it, as "
            "cuda:0 onwards; use audit.device: cuda"
        )
    if kind != "cuda" and executor.num_gpus > 0:
        raise ValueError(
            f"executor.num_gpus: {executor.num_gpus:g} reserves GPUs that audit.device: "
            f"{device} does not use; set audit.device: cuda or remove executor.num_gpus"
        )


class AuditSpec(BaseModel):
    """What is audited and how: data, architecture, training recipe, audit design and
    executor. The workflows' configuration adds the analysis and defence sections."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @model_validator(mode="after")
    def _model_fits_recipe(self) -> AuditSpec:
        if self.model.kind == "factory" and self.train.dropout > 0:
            raise ValueError(
                "train.dropout applies to the built-in architectures; a model.factory builds "
                "its own layers: pass the dropout rate in model.kwargs"
            )
        if self.model.kind != "estimator":
            return self
        if self.train != TrainConfig():
            changed = sorted(k for k, v in self.train if v != getattr(TrainConfig(), k))
            raise ValueError(
                f"train.{', train.'.join(changed)} configure PyTorch training; a "
                "model.estimator is trained by its own fit: set its options in model.params"
            )
        refused = [
            a.name
            for a in self.audit.declared_attacks()
            if a.threat_model == "white-box" or a.name in _GRADIENTS_OF_REFERENCES
        ]
        if refused:
            raise ValueError(
                f"attacks {', '.join(refused)} compute gradients of PyTorch models, which a "
                f"model.estimator ({self.model.estimator}) has not; drop them (score-based "
                "and label-only attacks work with estimators)"
            )
        return self

    @model_validator(mode="after")
    def _executor_fits_device(self) -> AuditSpec:
        check_executor_device(self.executor, self.audit.device)
        return self

    @classmethod
    def of(cls, raw: dict) -> AuditSpec:
        """The spec's sections of a full configuration mapping (as in metrics.json)."""
        return cls.model_validate({k: raw[k] for k in cls.model_fields if k in raw})
