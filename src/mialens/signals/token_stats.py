"""The per-token statistics of a causal language model on text samples, as arrays (see
:mod:`mialens.signals.token_logprobs`, which computes and caches them with PyTorch; the
text attacks read them without it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TokenLogProbs:
    """Per-token statistics of one model on ``n`` samples, each ``(n, T-1)`` float32;
    ``lengths[i]`` is the number of scored tokens of sample ``i`` (its tokens minus the
    start token), and positions at or after it hold zeros."""

    logprob: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    lengths: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """True at the scored positions ``(n, T-1)``."""
        return np.arange(self.logprob.shape[1]) < self.lengths[:, None]

    def stacked(self) -> np.ndarray:
        """``(3, n, T-1)``: log-probabilities, means, variances."""
        return np.stack([self.logprob, self.mean, self.var])
