"""Per-sample moments of many models' signals, with some models left out, from sums.

A leave-one-out audit attacks each of ``M`` models with the ``M - 1`` others as
references. Attacks whose fit is per-sample means and variances of the references
(LiRA's Gaussians, RMIA's marginal ``Pr(x)``) would sum ``M - 1`` values per sample
again for every target, ``O(M^2 N)`` in all. Here each side's moments (e.g. over the
models that trained a sample, IN, or did not, OUT) are summed once over all models,
``O(M N)`` (:func:`side_moments`), and a target's own values are subtracted, ``O(N)``
per target (:func:`leave_out`).

Numerics. The sums are taken around a per-sample pilot, the side's mean ``m`` over all
its models (the two-pass formulation, so no large offset is ever squared):
``S = sum (v - m)`` (zero up to rounding) and ``Q = sum (v - m)^2``. Leaving out the
deviations ``y_k = v_k - m`` gives count ``c' = c - k``, mean ``m + S' / c'`` and summed
squared deviations ``Q' - S'^2 / c'``, with ``S' = S - sum y_k`` and ``Q' = Q - sum y_k^2``.
Their rounding error is a few ``M eps`` relative to ``Q`` (and to ``|m| + |S'| / c'`` for
the mean), so the subtraction cancels only where the values left out carry nearly all
of the spread (or, for positive values, of the sum). Samples where the result falls
below :data:`CANCELLATION` of those scales are summed again over the remaining models;
every other result keeps a relative error below about ``M eps / CANCELLATION`` (1e-12 at
``M = 64``). Samples that lose no model on a side keep the full moments unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

CANCELLATION = 2.0**-6
"""Fraction of the full side's spread (``guard="spread"``) or mean magnitude
(``guard="mean"``) below which a left-out moment is summed again instead."""


@dataclass(frozen=True)
class SideMoments:
    """Moments of the values ``(M, N, Q)`` of the models on one side, per sample and query:
    ``count (N,)``, ``mean (N, Q)``, summed squared deviations from it ``squares (N, Q)``
    and the summed deviations ``residual (N, Q)`` (zero but for rounding)."""

    count: np.ndarray
    mean: np.ndarray
    squares: np.ndarray
    residual: np.ndarray


def side_moments(values: np.ndarray, side: np.ndarray) -> SideMoments:
    """Two-pass moments of ``values (M, N, Q)`` over the models ``side (M, N)`` selects."""
    mask = side[:, :, None]
    count = side.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):  # a side without models: NaN
        mean = np.where(mask, values, 0.0).sum(axis=0) / count[:, None]
    dev = values - mean[None]
    residual = np.where(mask, dev, 0.0).sum(axis=0)
    np.multiply(dev, dev, out=dev)
    squares = np.where(mask, dev, 0.0).sum(axis=0)
    return SideMoments(count, mean, squares, residual)


def leave_out(
    full: SideMoments,
    values: np.ndarray,
    side: np.ndarray,
    dropped: Sequence[int],
    guard: Literal["spread", "mean"],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(count, mean, squares)`` of the side without the models ``dropped``.

    ``full`` is :func:`side_moments` of ``values``/``side`` over all models. ``guard``
    names what must stay accurate: the squared deviations (and the mean relative to
    them), or the mean relative to itself (positive values such as probabilities); where
    the subtraction would cancel (module docstring) the sample is summed again.
    """
    dropped = np.asarray(dropped, dtype=np.int64)
    gone = side[dropped]
    lost = gone.sum(axis=0)
    count = full.count - lost
    own = np.where(gone[:, :, None], values[dropped] - full.mean[None], 0.0)
    # a sample that loses no model keeps its moments exactly: x + 0 == x, x - 0 == x
    rest = np.where((lost > 0)[:, None], full.residual - own.sum(axis=0), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):  # no model left: NaN
        step = rest / count[:, None]
        mean = full.mean + step
        squares = full.squares - (own * own).sum(axis=0) - rest * step
        np.maximum(squares, 0.0, out=squares)
        if guard == "spread":
            cancels = squares <= CANCELLATION * full.squares
        else:
            cancels = np.abs(mean) <= CANCELLATION * (np.abs(full.mean) + np.abs(step))
    redo = np.flatnonzero(cancels.any(axis=1) & (lost > 0) & (count > 0))
    if redo.size:
        remaining = side[:, redo]
        remaining[dropped] = False
        again = side_moments(values[:, redo], remaining)
        mean[redo], squares[redo] = again.mean, again.squares
    return count, mean, squares
