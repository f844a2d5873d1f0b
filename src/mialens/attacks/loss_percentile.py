"""Attack-P and Attack-R of Ye et al. 2022: loss thresholds at a percentile of non-members.

Both call a sample a member at false-positive level ``alpha`` when its loss on the target
is at most the ``alpha``-percentile ``c_alpha`` of a non-member loss distribution:
the target's losses on population data (Attack-P, one threshold for all samples) or the
sample's own losses on reference models that did not train on it (Attack-R, one
threshold per sample). Percentiles interpolate linearly between order statistics (as
``numpy.percentile``); the score is ``1 - F(loss)``, where ``F`` is the inverse of that
percentile function, so that ``score >= 1 - alpha`` exactly when ``loss <= c_alpha``, ties included.

Ye et al. 2022, Enhanced Membership Inference Attacks against Machine Learning Models
(CCS), Sec. 4 (Attack P, Attack R).
"""

from __future__ import annotations

import numpy as np

from mialens.attacks.base import Needs, ReferenceSignals, SignalAttack, TargetSignals
from mialens.signals.statistics import SignalSpec


def _interpolate(below: np.ndarray, m: np.ndarray, value_at, t: np.ndarray) -> np.ndarray:
    """Shared core of the inverse percentile: ``below`` of the ``m`` values are ``< t``."""
    i = np.clip(below - 1, 0, np.maximum(m - 2, 0))
    lo, hi = value_at(i), value_at(np.minimum(i + 1, np.maximum(m - 1, 0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(hi > lo, (t - lo) / (hi - lo), 0.0)
        inner = (i + frac) / np.maximum(m - 1, 1)
    return np.where(below == 0, 0.0, np.where(below >= m, 1.0, inner))


def interpolated_cdf(sorted_values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Inverse of the linear-interpolation percentile of one ascending sample.

    Returns ``F(t) = min{q : percentile(v, q) >= t}`` in ``[0, 1]``: 0 up to the
    smallest value, 1 above the largest, and ``(i + (t - v_i) / (v_{i+1} - v_i)) / (m - 1)``
    for ``v_i < t <= v_{i+1}``. Hence ``t <= percentile(v, alpha)`` iff ``F(t) <= alpha``,
    ties included.
    """
    below = np.searchsorted(sorted_values, t, side="left")
    m = np.full(t.shape, sorted_values.size)
    return _interpolate(below, m, lambda idx: sorted_values[idx], t)


def interpolated_cdf_rows(sorted_rows: np.ndarray, counts: np.ndarray, t: np.ndarray) -> np.ndarray:
    """:func:`interpolated_cdf` per row: row ``n`` holds ``counts[n]`` ascending values
    followed by ``+inf`` padding, and is evaluated at ``t[n]``."""
    below = (sorted_rows < t[:, None]).sum(axis=1)

    def value_at(idx: np.ndarray) -> np.ndarray:
        return np.take_along_axis(sorted_rows, idx[:, None], axis=1)[:, 0]

    return _interpolate(below, counts.astype(np.int64), value_at, t)


class AttackP(SignalAttack):
    """Attack-P (Ye et al. 2022, Sec. 4): threshold at a percentile of the target's
    population losses; the same threshold for every sample."""

    name = "attack_p"
    summary = "Ye et al. Attack-P: target loss vs. the target's loss percentiles on population data"
    paper = "Ye et al. 2022, Enhanced Membership Inference Attacks (CCS), Sec. 4, Attack P"
    needs = Needs("signals", population=True, chunking="samples")

    def signal(self) -> SignalSpec:
        return SignalSpec("loss")

    def _score(self, target: TargetSignals) -> np.ndarray:
        assert target.population is not None
        population = np.sort(target.population[:, 0])
        return 1.0 - interpolated_cdf(population, target.values[:, 0])


class AttackR(SignalAttack):
    """Attack-R (Ye et al. 2022, Sec. 4): threshold at a percentile of the sample's
    losses on reference models that did not train on it (per-sample threshold).

    Resolution: with ``R`` OUT references, ``F`` is 0 up to the smallest OUT loss, so a
    sample whose target loss is below all ``R`` scores exactly 1. For a non-member the
    target is one more OUT model, so by exchangeability this happens with probability
    ``1/(R+1)``: about ``1/(R+1)`` of the non-members tie at score 1 with every member
    that beats its references, and no threshold attains an FPR between 0 and about
    ``1/(R+1)``. A TPR at a lower FPR is the TPR at FPR 0, i.e. 0; metrics.json marks
    such levels ``reachable: false`` (:func:`mialens.metrics.roc.level_ties`). This is
    the paper's percentile test, kept as published; more OUT references (on average
    half of the reference models per sample) lower the reachable FPR.
    """

    name = "attack_r"
    discrete_scores = True
    summary = (
        "Ye et al. Attack-R: target loss vs. the sample's loss percentiles on OUT reference models"
    )
    paper = "Ye et al. 2022, Enhanced Membership Inference Attacks (CCS), Sec. 4, Attack R"
    needs = Needs("signals", references="offline", chunking="samples")

    def signal(self) -> SignalSpec:
        return SignalSpec("loss")

    def _fit(self, refs: ReferenceSignals | None) -> None:
        assert refs is not None
        out_losses = np.where(refs.member, np.inf, refs.values[:, :, 0]).T  # (N, R)
        self.sorted_out_ = np.sort(out_losses, axis=1)
        self.counts_ = (~refs.member).sum(axis=0)

    def _score(self, target: TargetSignals) -> np.ndarray:
        return 1.0 - interpolated_cdf_rows(self.sorted_out_, self.counts_, target.values[:, 0])
