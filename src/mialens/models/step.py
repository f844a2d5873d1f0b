"""The seams of one training step (:class:`Step`: the per-sample loss, a gradient hook
before noise, a hook on the noisy gradient after it, mixed precision) and the mini-batch
it works on (:class:`Batch`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch

LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
"""``loss(logits (N, C), targets (N,), weights (N,) or None) -> per-sample losses (N,)``.
``weights`` are the per-sample loss weights of a sample-aware defence (None without);
the loop averages the per-sample losses of each model's mini-batch."""


@dataclass(frozen=True)
class ClippedGradients:
    """What a gradient hook sees at one step: each sample's clipped gradient
    ``per_sample[name] (B, *shape)`` and their sum ``summed[name]``, the tensor the
    Gaussian noise is added to next (a hook may add to it in place, e.g. a canary)."""

    per_sample: dict[str, torch.Tensor]
    summed: dict[str, torch.Tensor]


GradHook = Callable[[ClippedGradients], None]


@dataclass(frozen=True)
class NoisyGradients:
    """What a noise hook sees at one DP-SGD step: ``noisy[name]``, the summed clipped
    gradient plus its Gaussian noise of standard deviation ``noise_multiplier *
    max_grad_norm``, before Opacus divides it by ``expected_batch_size`` and the
    optimizer steps (the update of plain SGD is ``-lr * noisy / expected_batch_size``).
    The tensors are Opacus' own and are scaled in place next: read them, copy what you
    keep, change nothing."""

    noisy: dict[str, torch.Tensor]
    noise_multiplier: float
    max_grad_norm: float
    expected_batch_size: int


NoisyHook = Callable[[NoisyGradients], None]


@dataclass(frozen=True)
class Step:
    """How one training step computes its gradient (the defaults are mialens' recipe).

    ``loss``: per-sample loss (:data:`LossFn`; None: the recipe's cross-entropy with its
    label smoothing); ``grad_hook``: called after per-sample clipping and before noise
    (needs clipping: ``train.dp`` or per-sample clip norms); ``noisy_hook``: called after
    DP-SGD adds its noise and before the update, at every step (needs ``train.dp``), e.g.
    by a white-box auditor who sees every noisy gradient; ``mixed_precision``: run the
    forward pass under bfloat16 autocast on CUDA (no effect on a CPU).
    """

    loss: LossFn | None = None
    grad_hook: GradHook | None = None
    noisy_hook: NoisyHook | None = None
    mixed_precision: bool = False

    def autocast(self, device: str | torch.device):
        """The forward pass's precision context on ``device``."""
        if self.mixed_precision and torch.device(device).type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()


@dataclass
class Batch:
    """One step's mini-batches of all ``K`` models: ``x (K, B, ...)``, ``y (K, B)``,
    ``valid (K, B)`` (False on padding), ``counts (K,)`` and per-sample ``extras
    (K, B, 3)`` (weight, smoothing, clip norm) or None."""

    x: torch.Tensor
    y: torch.Tensor
    valid: torch.Tensor
    counts: torch.Tensor
    extras: torch.Tensor | None = None
