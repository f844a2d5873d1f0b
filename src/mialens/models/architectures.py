"""Model architectures: an MLP for any input, a small CNN for images, and the benchmark
networks of :mod:`mialens.models.resnets` (WRN-d-k, CIFAR ResNet-18).

Every model exposes ``features(x)``, the penultimate-layer representation, besides
``forward(x)`` returning logits. Layers are limited to those Opacus supports for
per-sample gradients (Linear, Conv2d, GroupNorm), so any model can be trained with
DP-SGD.
"""

from __future__ import annotations

import math
from typing import Literal

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
    def _without_unused(self, handler):
        """Leave the residual networks' fields out where they do not apply (None), so
        that the other architectures' configurations, and their store keys, read as
        before these fields existed."""
        data = handler(self)
        return {k: v for k, v in data.items() if k not in _WRN_FIELDS or v is not None}


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
    """Instantiate the architecture of ``config`` for the given input shape and classes."""
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
