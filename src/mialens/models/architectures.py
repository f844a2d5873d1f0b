"""Model architectures: an MLP for any input and a small CNN for images.

Every model exposes ``features(x)``, the penultimate-layer representation, besides
``forward(x)`` returning logits. Layers are limited to those Opacus supports for
per-sample gradients (Linear, Conv2d, GroupNorm), so any model can be trained with
DP-SGD.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from mialens.errors import ConfigError

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class ModelConfig(BaseModel):
    """Architecture of the target and reference models."""

    model_config = ConfigDict(extra="forbid")

    arch: Literal["mlp", "cnn"] = Field(
        default="mlp", description="mlp (any input) or cnn (images)"
    )
    hidden: list[int] = Field(
        default=[256], description="mlp: hidden layer widths; cnn: widths of the dense layers"
    )
    channels: list[int] = Field(
        default=[32, 64],
        description="cnn: channels of each conv block (conv, activation, 2x2 pool)",
    )
    activation: Literal["relu", "tanh", "gelu"] = "relu"

    @field_validator("hidden", "channels")
    @classmethod
    def _positive(cls, widths: list[int]) -> list[int]:
        if any(w <= 0 for w in widths):
            raise ValueError(f"layer widths must be positive, got {widths}")
        return widths


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
            f"model.arch 'cnn' needs image inputs (channels, height, width); this data set has "
            f"samples of shape {input_shape}. Use model.arch: mlp for tabular data."
        )
    return SmallCNN(
        input_shape, num_classes, config.channels, config.hidden, config.activation, dropout
    )
