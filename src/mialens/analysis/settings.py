"""The ``analysis:`` section of an audit configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mialens.validation import check_fpr_levels

Space = Literal["input", "features", "logits"]


class AnalysisSettings(BaseModel):
    """Per-sample vulnerability and its link to outlierness (``mialens analyze``)."""

    model_config = ConfigDict(extra="forbid")

    attack: str | None = Field(
        default=None,
        description="attack whose scores define vulnerability (default: the audit's attack "
        "with the highest mean TPR at the lowest FPR every target resolves)",
    )
    fpr: list[float] = Field(
        default_factory=lambda: [0.01, 0.001],
        description="global FPR levels of the per-sample TPR and of the vulnerable sets",
    )
    fdr: float = Field(
        default=0.05,
        gt=0.0,
        lt=1.0,
        description="false-discovery rate of the vulnerable sets (Benjamini-Hochberg)",
    )
    top_fraction: float = Field(
        default=0.05, gt=0.0, lt=1.0, description="share of the pool ranked 'most vulnerable'"
    )
    tail_fraction: float = Field(
        default=0.1,
        gt=0.0,
        le=0.5,
        description="share of each target's non-members whose excesses fit the exponential "
        "tail behind the tail vulnerability (the ranking statistic)",
    )
    spaces: list[Space] = Field(
        default_factory=lambda: ["input", "features", "logits"],
        description="spaces of the geometric outlierness measures",
    )
    neighbors: int = Field(default=10, ge=1, description="k of the kNN distance and of LOF")
    iforest_trees: int = Field(default=100, ge=1, description="trees of each IsolationForest")
    feature_models: int | None = Field(
        default=8,
        ge=2,
        description="models whose features and logits feed the geometric measures: the first "
        "complementary pairs, so each sample is OUT for exactly half of them (null: all)",
    )
    embedding_samples: int = Field(
        default=2000, ge=0, description="samples in the t-SNE figure (0: no embedding)"
    )
    gallery: int = Field(
        default=12, ge=0, description="image data: most vulnerable samples shown (0: none)"
    )
    epoch_models: int = Field(
        default=0,
        ge=0,
        description="models retrained to record per-epoch outputs (cached in the model "
        "store; 0: none)",
    )

    @field_validator("fpr")
    @classmethod
    def _rates(cls, rates: list[float]) -> list[float]:
        return check_fpr_levels(rates)

    @field_validator("spaces")
    @classmethod
    def _spaces(cls, spaces: list[Space]) -> list[Space]:
        if len(set(spaces)) != len(spaces):
            raise ValueError(f"spaces listed twice: {spaces}")
        return spaces

    @field_validator("feature_models")
    @classmethod
    def _pairs(cls, k: int | None) -> int | None:
        if k is not None and k % 2:
            raise ValueError(f"must be even (whole complementary pairs); got {k}")
        return k
