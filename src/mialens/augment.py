"""Image transforms shared by training-time augmentation and query augmentation.

Images are tensors or arrays of shape ``(n, channels, height, width)``. Shifts move the
content by whole pixels and fill the uncovered border with zeros; flips mirror the
width axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the query views are numpy; training-time augmentation is torch
    import torch


@dataclass(frozen=True)
class Transform:
    """One deterministic view of an image: optional horizontal flip, then a shift."""

    flip: bool = False
    dy: int = 0
    dx: int = 0

    @property
    def is_identity(self) -> bool:
        return not self.flip and self.dy == 0 and self.dx == 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.is_identity:
            return x
        out = x[..., ::-1] if self.flip else x
        return shift_images(out, self.dy, self.dx)


def shift_images(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift images down by ``dy`` and right by ``dx`` pixels, zero-filling the border."""
    if dy == 0 and dx == 0:
        return np.ascontiguousarray(x)
    h, w = x.shape[-2:]
    out = np.zeros_like(x)
    src_y = slice(max(0, -dy), min(h, h - dy))
    dst_y = slice(max(0, dy), min(h, h + dy))
    src_x = slice(max(0, -dx), min(w, w - dx))
    dst_x = slice(max(0, dx), min(w, w + dx))
    out[..., dst_y, dst_x] = x[..., src_y, src_x]
    return out


def query_transforms(flip: bool, shift: int) -> list[Transform]:
    """All views with shifts in ``[-shift, shift]^2`` and, if ``flip``, their mirrors.

    The identity comes first, so the first query is always the unmodified sample.
    """
    if shift < 0:
        raise ValueError(f"shift must be >= 0, got {shift}")
    offsets = [(dy, dx) for dy in range(-shift, shift + 1) for dx in range(-shift, shift + 1)]
    offsets.sort(key=lambda o: (o != (0, 0), o))
    views = [Transform(False, dy, dx) for dy, dx in offsets]
    if flip:
        views += [Transform(True, dy, dx) for dy, dx in offsets]
    return views


def random_augment(
    x: torch.Tensor, flip: bool, shift: int, generator: torch.Generator
) -> torch.Tensor:
    """Training-time augmentation: a random flip and a random shift per image."""
    import torch

    n, dev = x.shape[0], x.device
    if flip:  # random draws come from the (CPU) generator, then move to the data's device
        mirror = (torch.rand(n, generator=generator) < 0.5).to(dev)
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    if shift > 0:
        h, w = x.shape[-2:]
        padded = torch.nn.functional.pad(x, (shift, shift, shift, shift))
        dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator).to(dev)
        dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator).to(dev)
        rows = (dy[:, None] + torch.arange(h, device=dev)[None, :])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=dev)[None, :])[:, None, None, :]
        batch = torch.arange(n, device=dev)[:, None, None, None]
        chan = torch.arange(x.shape[1], device=dev)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    return x
