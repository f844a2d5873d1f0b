"""Likelihood Ratio Attack (LiRA), Carlini et al. 2022, Membership Inference Attacks From
First Principles (IEEE S&P).

The signal is the logit-scaled confidence ``phi = log(p_y / (1 - p_y))`` (Eq. 4), whose
distribution over models that did (IN) or did not (OUT) train on a sample is close to
Gaussian. For every sample and query the attack fits ``N(mu_in, s_in^2)`` and
``N(mu_out, s_out^2)`` on the reference models (Algorithm 1) and scores the target's
observation ``o``:

* online: ``log N(o; mu_in, s_in^2) - log N(o; mu_out, s_out^2)`` (the likelihood ratio);
* offline: ``log Pr[Z <= o]`` with ``Z ~ N(mu_out, s_out^2)``, the paper's one-sided
  test (Sec. IV-D, ``Lambda = 1 - Pr[Z > o]``). The official code scores offline with the
  two-sided ``-log N(o; mu_out, s_out^2)`` instead; we follow the paper.

With several queries (augmentations) a Gaussian is fitted per query and the per-query
scores are averaged (Sec. VI-A). ``variance="global"`` shares one variance per side
across all samples (the paper's choice below 64 reference models): the pooled
within-sample variance (summed over samples in blocks combined exactly, so that
scoring in chunks gives the same value). The official code instead takes the standard
deviation of all values together, which also counts the spread between samples'
means. ``center`` picks the mean (paper, Algorithm 1) or the median (official code).

In a leave-one-out audit (:meth:`SignalAttack.fit_leaving_out`) the means and summed
squared deviations of each target's references are the sums over all models minus the
target's own values (:mod:`mialens.signals.leave_one_out`): ``O(N)`` per target instead
of a refit on ``M - 1`` models, equal to the refit up to rounding. The median is no sum:
``center="median"`` refits.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.special import log_ndtr

from mialens.attacks.base import (
    AttackParams,
    ModelSignals,
    Needs,
    ReferenceSignals,
    SignalAttack,
    TargetSignals,
)
from mialens.signals.leave_one_out import side_moments
from mialens.signals.statistics import SignalSpec
from mialens.signals.store import block_sums, exact_total

_MIN_STD = 1e-6
_PER_EXAMPLE_MIN_MODELS = 32


class LiRAParams(AttackParams):
    variance: Literal["auto", "global", "per_example"] = "auto"
    """auto: per-example once every sample has at least 32 models on each side it uses."""
    center: Literal["mean", "median"] = "mean"


def _side_moments(
    values: np.ndarray, side: np.ndarray, center: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Location ``(N, Q)``, summed squared deviations ``(N, Q)`` and model counts ``(N,)``
    of the values on one side; ``values`` is ``(R, N, Q)`` and ``side`` ``(R, N)`` selects
    the models that count. Every output is per sample (independent of the others)."""
    if center == "mean":
        moments = side_moments(values, side)
        return moments.mean, moments.squares, moments.count
    mask = side[:, :, None]
    loc = np.nanmedian(np.where(mask, values, np.nan), axis=0)
    dev = values - loc[None]
    np.multiply(dev, dev, out=dev)
    return loc, np.where(mask, dev, 0.0).sum(axis=0), side.sum(axis=0)


def _resolve_variance(variance: str, *fewest: int) -> str:
    """``auto``: per-example once every sample has 32 models on each side it uses."""
    if variance != "auto":
        return variance
    return "per_example" if min(fewest) >= _PER_EXAMPLE_MIN_MODELS else "global"


def _log_normal_pdf(x: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    z = (x - loc) / scale
    return -0.5 * z * z - np.log(scale) - 0.5 * np.log(2 * np.pi)


class _LiRA(SignalAttack):
    """Fitting shared by both variants: a Gaussian per sample and query on each side.

    The fit is per sample except for the variance mode and the pooled (global)
    variances: the declared summary pass (:meth:`chunk_summary`, :meth:`use_summaries`)
    lets the scoring engine compute them over all samples before fitting chunk by chunk;
    the pooled sums are taken block-wise and combined exactly, so chunking never changes
    a score.
    """

    needs = Needs(
        "signals", references="online", all_queries=True, chunking="samples", summary_pass=True
    )
    Params = LiRAParams

    def signal(self) -> SignalSpec:
        return SignalSpec("rescaled_logit")

    def _sides(self, member: np.ndarray) -> list[np.ndarray]:
        """Membership masks of the sides fitted: IN and OUT (online) or OUT (offline)."""
        return [member, ~member] if self.needs.references == "online" else [~member]

    def _moments(self, refs: ReferenceSignals) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """:func:`_side_moments` of every side fitted."""
        return [_side_moments(refs.values, s, self.params.center) for s in self._sides(refs.member)]

    def _moments_leaving_out(self, models: ModelSignals, target: int) -> list[tuple]:
        """:meth:`_moments` of the references of ``target``, from sums over all models
        (:meth:`ModelSignals.without`); the median is no sum, so ``center="median"``
        takes it from the references themselves."""
        if self.params.center == "median":
            return self._moments(models.references(target))
        names = ["in", "out"] if self.needs.references == "online" else ["out"]
        out = []
        for name in names:
            count, loc, sq = models.without(name, [target], guard="spread")
            out.append((loc, sq, count))
        return out

    def chunk_summary(self, refs: ReferenceSignals) -> list[tuple[np.ndarray, int, int]]:
        """Per side: block sums of the squared deviations, the number of values, and the
        fewest models any sample has on that side."""
        return _summary(self._moments(refs))

    def chunk_summary_leaving_out(self, models: ModelSignals, target: int) -> list[tuple]:
        return _summary(self._moments_leaving_out(models, target))

    def use_summaries(self, summaries: list[list[tuple[np.ndarray, int, int]]]) -> None:
        """Fix the variance mode and pooled scales of every later fit from the summaries
        of all chunks of samples (the engine's first pass)."""
        self._preset = self._pool(summaries)

    def _pool(self, summaries) -> tuple[str, list[float]]:
        sides = list(zip(*summaries, strict=True))
        fewest = (min(s[2] for s in side) for side in sides)
        variance = _resolve_variance(self.params.variance, *fewest)
        pooled = [
            max(float(np.sqrt(exact_total(s[0] for s in side) / sum(s[1] for s in side))), _MIN_STD)
            for side in sides
        ]
        return variance, pooled

    def _fit(self, refs: ReferenceSignals | None) -> None:
        assert refs is not None
        self._fit_sides(self._moments(refs))

    def _fit_leaving_out(self, models: ModelSignals, target: int) -> None:
        self._fit_sides(self._moments_leaving_out(models, target))

    def _fit_sides(self, moments: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """The Gaussian of every side from its moments (:func:`_side_moments`)."""
        preset = getattr(self, "_preset", None)
        variance, scales = preset or self._pool([_summary(moments)])
        self.variance_ = variance
        self.side_stats_ = []
        for (loc, sq, count), scale in zip(moments, scales, strict=True):
            if variance == "per_example":
                scale = np.maximum(np.sqrt(sq / count[:, None]), _MIN_STD)
            self.side_stats_.append((loc, scale))


def _summary(moments: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[tuple]:
    """:meth:`_LiRA.chunk_summary` from the moments of every side."""
    return [
        (block_sums(sq.sum(axis=1)), int(count.sum()) * sq.shape[1], int(count.min()))
        for _, sq, count in moments
    ]


class LiRAOnline(_LiRA):
    """LiRA with IN and OUT reference models (see the module docstring)."""

    name = "lira_online"
    summary = (
        "LiRA online: Gaussian likelihood ratio of IN vs. OUT reference models (Carlini et al.)"
    )
    paper = "Carlini et al. 2022, Membership Inference Attacks From First Principles (S&P), Alg. 1"

    def _fit_sides(self, moments: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        super()._fit_sides(moments)
        (self.mu_in_, self.std_in_), (self.mu_out_, self.std_out_) = self.side_stats_

    def _score(self, target: TargetSignals) -> np.ndarray:
        o = target.values
        llr = _log_normal_pdf(o, self.mu_in_, self.std_in_) - _log_normal_pdf(
            o, self.mu_out_, self.std_out_
        )
        return llr.mean(axis=1)


class LiRAOffline(_LiRA):
    """LiRA's one-sided offline test on OUT reference models (see the module docstring)."""

    name = "lira_offline"
    summary = (
        "LiRA offline: one-sided Gaussian test against OUT reference models only (Carlini et al.)"
    )
    paper = (
        "Carlini et al. 2022, Membership Inference Attacks From First Principles (S&P), Sec. IV-D"
    )
    needs = Needs(
        "signals", references="offline", all_queries=True, chunking="samples", summary_pass=True
    )

    def _fit_sides(self, moments: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        super()._fit_sides(moments)
        ((self.mu_out_, self.std_out_),) = self.side_stats_

    def _score(self, target: TargetSignals) -> np.ndarray:
        return log_ndtr((target.values - self.mu_out_) / self.std_out_).mean(axis=1)
