"""The training recipe: :class:`TrainConfig` and its sections (early stopping, DP-SGD,
augmentation, RelaxLoss, adversarial regularisation), validated at the boundary."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator


class EarlyStoppingConfig(BaseModel):
    """Stop when the validation metric has not improved for ``patience`` epochs."""

    model_config = ConfigDict(extra="forbid")

    patience: int = Field(default=5, ge=1)
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    min_delta: float = Field(default=0.0, ge=0.0)
    restore_best: bool = Field(default=True, description="keep the weights of the best epoch")


class DPConfig(BaseModel):
    """DP-SGD through Opacus (Abadi et al. 2016) with Poisson sampling.

    Give either ``noise_multiplier`` or ``target_epsilon`` (the noise is then calibrated
    so that the planned epochs spend exactly that budget).
    """

    model_config = ConfigDict(extra="forbid")

    noise_multiplier: float | None = Field(default=None, gt=0.0)
    target_epsilon: float | None = Field(default=None, gt=0.0)
    max_grad_norm: float = Field(default=1.0, gt=0.0, description="per-sample clipping norm C")
    delta: float = Field(default=1e-5, gt=0.0, lt=1.0)
    accountant: Literal["rdp", "prv", "gdp"] = "rdp"

    @model_validator(mode="after")
    def _one_budget(self) -> DPConfig:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("train.dp needs exactly one of noise_multiplier or target_epsilon")
        return self


class AugmentConfig(BaseModel):
    """Training-time image augmentation: random horizontal flips and shifts."""

    model_config = ConfigDict(extra="forbid")

    flip: bool = False
    shift: int = Field(default=0, ge=0, description="largest shift in pixels")


class RelaxLossConfig(BaseModel):
    """RelaxLoss (Chen, Yu & Fritz 2022, Alg. 1): keep the training loss near ``alpha``."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(gt=0.0, description="target mean training loss")
    upper: float = Field(
        default=1.0, gt=0.0, le=1.0, description="cap on the true-class confidence when flattening"
    )


class AdversarialRegularizationConfig(BaseModel):
    """Adversarial regularisation (Nasr, Shokri & Houmansadr 2018, Alg. 1)."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(default=1.0, ge=0.0, description="weight lambda of the privacy gain")
    attack_steps: int = Field(default=1, ge=1, description="inference-model steps per step")
    attack_lr: float = Field(default=1e-3, gt=0.0)


class TrainConfig(BaseModel):
    """How every target and reference model is trained."""

    model_config = ConfigDict(extra="forbid")

    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = Field(default=1e-3, gt=0.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0, description="sgd only")
    weight_decay: float = Field(default=0.0, ge=0.0, description="L2 penalty")
    schedule: Literal["constant", "cosine", "step"] = Field(
        default="constant", description="step: lr x0.1 at 50% and 75% of the epochs"
    )
    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=64, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    augment: AugmentConfig | None = None
    early_stopping: EarlyStoppingConfig | None = None
    dp: DPConfig | None = None
    relaxloss: RelaxLossConfig | None = None
    adversarial_regularization: AdversarialRegularizationConfig | None = None
    mixed_precision: bool = Field(
        default=False,
        description="on CUDA, the training forward pass under bfloat16 autocast (logits, "
        "loss and weights stay float32); no effect on a CPU",
    )

    @model_serializer(mode="wrap")
    def _without_default_precision(self, handler):
        """Leave ``mixed_precision`` out while off, so that recipes written before it
        existed keep their dumps and model-store keys."""
        data = handler(self)
        if not self.mixed_precision:
            data.pop("mixed_precision", None)
        return data

    @model_validator(mode="after")
    def _one_objective(self) -> TrainConfig:
        chosen = [k for k in ("dp", "relaxloss", "adversarial_regularization") if getattr(self, k)]
        if len(chosen) > 1:
            raise ValueError(f"train.{chosen[0]} and train.{chosen[1]} cannot be combined")
        if self.relaxloss is not None and self.label_smoothing > 0:
            raise ValueError("train.relaxloss replaces the loss: set label_smoothing to 0")
        return self
