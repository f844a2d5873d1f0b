"""Model architectures: an MLP for any input, a small CNN for images, and the benchmark
networks of :mod:`mialens.models.resnets` (WRN-d-k, CIFAR ResNet-18).

Every model exposes ``features(x)``, the penultimate-layer representation, besides
``forward(x)`` returning logits. Layers are limited to those Opacus supports for
per-sample gradients (Linear, Conv2d, GroupNorm), so any model can be trained with
DP-SGD. :class:`ModelConfig` also names the user's own models instead: a PyTorch
``factory`` (:mod:`mialens.models.factory`) or a tabular ``estimator``
(:mod:`mialens.models.estimators`), exactly one kind per configuration.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)
from torch import nn

from mialens.errors import ConfigError
from mialens.models.factory import build_factory_model, check_import_path
from mialens.models.resnets import RESNET_GROUPS, WRN_GROUPS, ResNet18, WideResNet

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


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


class MLP(nn.Module):
    """Fully connected network on flattened inputs."""

    def __init__(
        self, in_features: int, num_classes: int, hidden: list[int], activation: str, dropout: float
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class SmallCNN(nn.Module):
    """Conv blocks (3x3 conv, activation, 2x2 max-pool), then dense layers."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        channels: list[int],
        hidden: list[int],
        activation: str,
        dropout: float,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        blocks: list[nn.Module] = []
        for out in channels:
            blocks += [nn.Conv2d(c, out, 3, padding=1), _ACTIVATIONS[activation]()]
            if min(h, w) >= 2:
                blocks.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c = out
        dense: list[nn.Module] = [nn.Flatten()]
        width = c * h * w
        for size in hidden:
            dense += [nn.Linear(width, size), _ACTIVATIONS[activation]()]
            if dropout > 0:
                dense.append(nn.Dropout(dropout))
            width = size
        self.body = nn.Sequential(*blocks, *dense)
        self.head = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def build_model(
    config: ModelConfig, input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0
) -> nn.Module:
    """Instantiate the architecture of ``config`` for the given input shape and classes
    (a factory's module is built as it is: ``dropout`` applies to the built-ins only)."""
    if config.factory is not None:
        return build_factory_model(config.factory, config.kwargs, input_shape, num_classes)
    if config.estimator is not None:
        raise ConfigError(
            f"model.estimator {config.estimator!r} is not a PyTorch model; this step needs "
            "one (use model.arch or model.factory)"
        )
    if config.arch == "mlp":
        return MLP(math.prod(input_shape), num_classes, config.hidden, config.activation, dropout)
    if len(input_shape) != 3:
        raise ConfigError(
            f"model.arch {config.arch!r} needs image inputs (channels, height, width); this "
            f"data set has samples of shape {input_shape}. Use model.arch: mlp for tabular data."
        )
    if config.arch == "wrn":
        return WideResNet(
            input_shape[0], num_classes, config.depth, config.widen, dropout, config.norm_groups
        )
    if config.arch == "resnet18":
        if dropout > 0:
            raise ConfigError("model.arch resnet18 has no dropout layers; set train.dropout: 0")
        return ResNet18(input_shape[0], num_classes, config.norm_groups)
    return SmallCNN(
        input_shape, num_classes, config.channels, config.hidden, config.activation, dropout
    )
