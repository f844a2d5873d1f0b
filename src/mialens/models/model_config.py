"""The configuration of the target and reference models: a built-in architecture
(:mod:`mialens.models.architectures`), the user's PyTorch ``factory``
(:mod:`mialens.models.factory`) or a tabular ``estimator``
(:mod:`mialens.models.estimators`), exactly one kind per configuration. Reading it needs
no PyTorch."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from mialens.models.factory import check_import_path

WRN_GROUPS = 16
"""GroupNorm groups of a WRN by default (De et al. 2022)."""
RESNET_GROUPS = 32
"""GroupNorm groups of ResNet-18 by default (Wu & He 2018)."""


class ModelConfig(BaseModel):
    """Architecture of the target and reference models."""

    model_config = ConfigDict(extra="forbid")

    arch: Literal["mlp", "cnn", "wrn", "resnet18"] = Field(
        default="mlp",
        description="mlp (any input), cnn (images), wrn (WRN-depth-widen) or resnet18 (images)",
    )
    hidden: list[int] = Field(
        default=[256], description="mlp: hidden layer widths; cnn: widths of the dense layers"
    )
    channels: list[int] = Field(
        default=[32, 64],
        description="cnn: channels of each conv block (conv, activation, 2x2 pool)",
    )
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    factory: str | None = Field(
        default=None,
        description="your own PyTorch model: 'package.module:function', called as "
        "function(input_shape=<tuple>, num_classes=<int>, **kwargs) (runs your code)",
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="factory: its arguments")
    estimator: str | None = Field(
        default=None,
        description="a scikit-learn-style classifier with predict_proba: "
        "'package.module:Class' (or a function returning one; runs your code)",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="estimator: its parameters")
    depth: int | None = Field(default=None, ge=10, description="wrn: depth 6N + 4 (default 16)")
    widen: int | None = Field(default=None, ge=1, description="wrn: widen factor k (default 4)")
    norm_groups: int | None = Field(
        default=None, ge=1, description="wrn, resnet18: GroupNorm groups (default 16 and 32)"
    )

    @field_validator("hidden", "channels")
    @classmethod
    def _positive(cls, widths: list[int]) -> list[int]:
        if any(w <= 0 for w in widths):
            raise ValueError(f"layer widths must be positive, got {widths}")
        return widths

    @field_validator("factory", "estimator")
    @classmethod
    def _import_path(cls, path: str | None, info) -> str | None:
        return None if path is None else check_import_path(path, f"model.{info.field_name}")

    @model_validator(mode="after")
    def _one_kind(self) -> ModelConfig:
        if self.factory is not None and self.estimator is not None:
            raise ValueError("choose one of model.factory and model.estimator")
        if self.kwargs and self.factory is None:
            raise ValueError("model.kwargs are the arguments of model.factory; name one")
        if self.params and self.estimator is None:
            raise ValueError("model.params are the parameters of model.estimator; name one")
        chosen = "factory" if self.factory is not None else "estimator"
        built_in = sorted(self.model_fields_set - set(_USER_MODEL_FIELDS))
        if self.kind != "built-in" and built_in:
            where = "kwargs" if chosen == "factory" else "params"
            raise ValueError(
                f"model.{', model.'.join(built_in)} configure the built-in architectures; "
                f"with model.{chosen}, set your model's options in model.{where}"
            )
        return self

    @model_validator(mode="after")
    def _residual_fields(self) -> ModelConfig:
        """Fill in the residual networks' defaults; refuse their fields elsewhere."""
        allowed = {"wrn": _WRN_FIELDS, "resnet18": {"norm_groups"}}.get(self.arch, set())
        given = [f for f in _WRN_FIELDS if getattr(self, f) is not None and f not in allowed]
        if given:
            raise ValueError(f"model.{given[0]} does not apply to model.arch {self.arch!r}")
        if self.arch == "wrn":
            if (self.depth or 16) % 6 != 4:
                raise ValueError(f"a WRN's depth is 6N + 4 (10, 16, 22, 28, ...), not {self.depth}")
            self.depth, self.widen = self.depth or 16, self.widen or 4
        if self.arch in ("wrn", "resnet18") and self.norm_groups is None:
            self.norm_groups = WRN_GROUPS if self.arch == "wrn" else RESNET_GROUPS
        return self

    @model_serializer(mode="wrap")
    def _chosen_fields(self, handler) -> dict[str, Any]:
        """The fields that apply only: a built-in architecture's configuration (and so
        its store keys) reads as before the user-model and residual-network fields
        existed (those are left out where unset), and a user model's omits the
        built-ins' fields (so that it validates again)."""
        data = handler(self)
        if self.kind == "built-in":
            return {
                k: v
                for k, v in data.items()
                if k not in _USER_MODEL_FIELDS and (k not in _WRN_FIELDS or v is not None)
            }
        return {k: v for k, v in data.items() if k in _USER_MODEL_FIELDS and v}

    @property
    def kind(self) -> Literal["built-in", "factory", "estimator"]:
        """A built-in architecture, a user's factory or a user's estimator."""
        if self.factory is not None:
            return "factory"
        return "estimator" if self.estimator is not None else "built-in"


_USER_MODEL_FIELDS = ("factory", "kwargs", "estimator", "params")
_WRN_FIELDS = ("depth", "widen", "norm_groups")
