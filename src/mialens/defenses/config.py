"""Configuration of defence evaluations: which defences, applied how."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mialens.defenses.monitor_evaluation import MonitorEvaluation
from mialens.defenses.output import build_output_defense


class SampleAwareConfig(BaseModel):
    """A defence aimed at the training samples most likely to leak.

    The defender flags the ``fraction`` of its training samples (per class) that an
    outlier ``detector`` in input space finds most atypical, the samples Khalil et al.
    2025 find most vulnerable, and then removes them, down-weights their loss, smooths
    their labels more strongly, or clips their per-sample gradients to ``clip_norm``
    with Gaussian noise of ``noise_multiplier * clip_norm`` on every step's summed
    gradient (DP-SGD's mechanism for them alone). ``counterpart: true`` applies the same action
    to the same number of *random* training samples instead: the uniform baseline the
    sample-aware defence must beat on privacy per accuracy point.
    """

    model_config = ConfigDict(extra="forbid")

    action: Literal["remove", "downweight", "smooth", "clip"]
    detector: Literal["knn", "lof", "isolation_forest", "centroid"] = "knn"
    fraction: float = Field(default=0.05, gt=0.0, lt=1.0)
    weight: float = Field(default=0.2, ge=0.0, le=1.0, description="downweight: loss weight")
    smoothing: float = Field(default=0.5, gt=0.0, le=1.0, description="smooth: label smoothing")
    clip_norm: float = Field(default=1.0, gt=0.0, description="clip: per-sample gradient norm")
    noise_multiplier: float = Field(
        default=1.0, ge=0.0, description="clip: noise standard deviation / clip_norm"
    )
    counterpart: bool = Field(default=False, description="same action on random samples")


class DefenseSpec(BaseModel):
    """One defence to evaluate: overrides of the audit's training recipe and settings,
    an output defence, or a sample-aware training change (or a combination)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="label of this defence in defenses.json and the report")
    train: dict[str, Any] = Field(default_factory=dict, description="overrides of `train:`")
    audit: dict[str, Any] = Field(default_factory=dict, description="overrides of `audit:`")
    output: str | dict[str, Any] | None = Field(default=None, description="an output defence")
    sample_aware: SampleAwareConfig | None = None

    @model_validator(mode="after")
    def _known_output(self) -> DefenseSpec:
        if self.output is not None:
            build_output_defense(self.output)  # raises a ConfigError naming the problem
        return self


class DefenseSettings(BaseModel):
    """The `defenses:` section: the defences and how every one is attacked."""

    model_config = ConfigDict(extra="forbid")

    evaluate: list[DefenseSpec] = Field(default_factory=list)
    label_only_attacks: list[str | dict[str, Any]] = Field(
        default_factory=lambda: ["gap"],
        description="attacks added for output defences, which only touch confidences",
    )
    include_undefended: bool = Field(default=True, description="evaluate the plain recipe too")
    monitor: MonitorEvaluation | None = Field(
        default=None, description="evaluate the query monitor in front of the undefended target"
    )
