"""The benchmark image networks of membership-inference work, with GroupNorm.

- :class:`WideResNet`, WRN-d-k of Zagoruyko & Komodakis (2016), "Wide Residual
  Networks", Table 1: a 3x3 convolution to 16 channels, then three groups of
  ``N = (d - 4) / 6`` pre-activation basic blocks (norm, ReLU, 3x3 conv, twice) of
  ``16k``, ``32k`` and ``64k`` channels, the last two starting with stride 2, then norm,
  ReLU, global average pooling and a linear layer. Dropout, when asked for, sits between
  the two convolutions of every block (Sec. 2.3). A block whose width or stride changes
  has a 1x1 convolution on its shortcut. LiRA (Carlini et al. 2022) trains WRN-28-2 in
  its released code (``research/mi_lira_2021``), WRN-16-4 is the DP-SGD benchmark of De
  et al. (2022).
- :class:`ResNet18`, the CIFAR variant of He et al. (2016)'s ResNet-18: a 3x3 stem of 64
  channels without max-pooling, four stages of two post-activation basic blocks of 64,
  128, 256 and 512 channels (stride 1, 2, 2, 2), global average pooling, a linear layer.

Batch normalisation is replaced by GroupNorm (Wu & He 2018), which normalises each
sample on its own: Opacus can then compute per-sample gradients (DP-SGD), the networks
have no buffers (so they stack into batched ensembles) and a model's output on one
sample does not depend on the rest of its batch. Groups: 16 for the WRN, as De et al.
(2022) use for DP-SGD training of WRN-16-4; 32 for ResNet-18, Wu & He's default. With
GroupNorm the parameter count equals the batch-norm network's (two per channel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mialens.errors import ConfigError
from mialens.models.model_config import RESNET_GROUPS, WRN_GROUPS


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    if channels % groups:
        raise ConfigError(
            f"GroupNorm with {groups} groups needs a channel count divisible by it; a layer "
            f"here has {channels} channels (set model.norm_groups to a divisor)"
        )
    return nn.GroupNorm(groups, channels)


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class _WideBlock(nn.Module):
    """Pre-activation basic block B(3,3) of a WRN, with dropout between its convolutions."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float, groups: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in, groups), _conv3x3(c_in, c_out, stride)
        self.norm2, self.conv2 = _norm(c_out, groups), _conv3x3(c_out, c_out)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.norm1(x))
        y = F.relu(self.norm2(self.conv1(o)))
        if self.dropout is not None:
            y = self.dropout(y)
        # a projecting shortcut takes the activated input, as the authors' code does
        return self.conv2(y) + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(nn.Module):
    """WRN-``depth``-``widen`` (``depth = 6N + 4``) with GroupNorm; see the module docstring."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        depth: int,
        widen: int,
        dropout: float = 0.0,
        groups: int = WRN_GROUPS,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ConfigError(
                f"a WRN's depth is 6N + 4 with N >= 1 (10, 16, 22, 28, ...), not {depth}"
            )
        if widen < 1:
            raise ConfigError(f"a WRN's widen factor must be at least 1, not {widen}")
        n = (depth - 4) // 6
        widths = [16 * widen, 32 * widen, 64 * widen]
        blocks: list[nn.Module] = []
        c = 16
        for stage, width in enumerate(widths):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(_WideBlock(c, width, stride, dropout, groups))
                c = width
        self.stem = _conv3x3(in_channels, 16)
        self.blocks = nn.Sequential(*blocks)
        self.norm = _norm(c, groups)
        self.head = nn.Linear(c, num_classes)
        _init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm(self.blocks(self.stem(x))))
        return out.mean(dim=(-2, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _BasicBlock(nn.Module):
    """Post-activation basic block of ResNet-18 (He et al. 2016, Fig. 2 left)."""

    def __init__(self, c_in: int, c_out: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv1, self.norm1 = _conv3x3(c_in, c_out, stride), _norm(c_out, groups)
        self.conv2, self.norm2 = _conv3x3(c_out, c_out), _norm(c_out, groups)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), _norm(c_out, groups)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x)))))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18 with GroupNorm; see the module docstring."""

    def __init__(self, in_channels: int, num_classes: int, groups: int = RESNET_GROUPS) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv3x3(in_channels, 64), _norm(64, groups), nn.ReLU())
        blocks: list[nn.Module] = []
        c = 64
        for stage, width in enumerate([64, 128, 256, 512]):
            for i in range(2):
                blocks.append(_BasicBlock(c, width, 2 if stage > 0 and i == 0 else 1, groups))
                c = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c, num_classes)
        _init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean(dim=(-2, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _init_weights(model: nn.Module) -> None:
    """He (fan-out) initialisation of the convolutions, as in the WRN authors' code; unit
    scale and zero shift for the norms; torch's default for the linear head."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.GroupNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
