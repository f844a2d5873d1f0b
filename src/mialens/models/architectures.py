"""Model architectures: an MLP for any input, a small CNN for images, and the benchmark
networks of :mod:`mialens.models.resnets` (WRN-d-k, CIFAR ResNet-18).

Every model exposes ``features(x)``, the penultimate-layer representation, besides
``forward(x)`` returning logits. Layers are limited to those Opacus supports for
per-sample gradients (Linear, Conv2d, GroupNorm), so any model can be trained with
DP-SGD. Their configuration, :class:`~mialens.models.model_config.ModelConfig`, is
importable from here too.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mialens.errors import ConfigError
from mialens.models.factory import build_factory_model
from mialens.models.model_config import ModelConfig
from mialens.models.resnets import ResNet18, WideResNet

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


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
