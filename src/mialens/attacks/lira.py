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
within-sample variance. The official code instead takes the standard deviation of all
values together, which also counts the spread between samples' means. ``center`` picks
the mean (paper, Algorithm 1) or the median (official code).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.special import log_ndtr

from mialens.attacks.base import (
    AttackParams,
    ReferenceSignals,
    SignalAttack,
    SignalSpec,
    TargetSignals,
)

_MIN_STD = 1e-6
_PER_EXAMPLE_MIN_MODELS = 32


class LiRAParams(AttackParams):
    variance: Literal["auto", "global", "per_example"] = "auto"
    """auto: per-example once every sample has at least 32 models on each side it uses."""
    center: Literal["mean", "median"] = "mean"


def _side_stats(
    values: np.ndarray, side: np.ndarray, variance: str, center: str
) -> tuple[np.ndarray, np.ndarray]:
    """Location ``(N, Q)`` and scale (``(N, Q)`` or scalar) of the values on one side.

    ``values`` is ``(R, N, Q)`` and ``side`` ``(R, N)`` selects the models that count.
    """
    mask = np.broadcast_to(side[:, :, None], values.shape)
    masked = np.where(mask, values, np.nan)
    loc = np.nanmedian(masked, axis=0) if center == "median" else np.nanmean(masked, axis=0)
    sq = np.where(mask, (values - loc[None]) ** 2, 0.0)
    count = side.sum(axis=0)[:, None]
    if variance == "global":
        scale = np.sqrt(sq.sum() / (count.sum() * values.shape[2]))
    else:
        scale = np.sqrt(sq.sum(axis=0) / count)
    return loc, np.maximum(scale, _MIN_STD)


def _resolve_variance(variance: str, *counts: np.ndarray) -> str:
    if variance != "auto":
        return variance
    return (
        "per_example" if min(int(c.min()) for c in counts) >= _PER_EXAMPLE_MIN_MODELS else "global"
    )


def _log_normal_pdf(x: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    z = (x - loc) / scale
    return -0.5 * z * z - np.log(scale) - 0.5 * np.log(2 * np.pi)


class LiRAOnline(SignalAttack):
    """LiRA with IN and OUT reference models (see the module docstring)."""

    name = "lira_online"
    summary = (
        "LiRA online: Gaussian likelihood ratio of IN vs. OUT reference models (Carlini et al.)"
    )
    paper = "Carlini et al. 2022, Membership Inference Attacks From First Principles (S&P), Alg. 1"
    references = "online"
    uses_all_queries = True
    Params = LiRAParams

    def signal(self) -> SignalSpec:
        return SignalSpec("rescaled_logit")

    def _fit(self, refs: ReferenceSignals | None) -> None:
        assert refs is not None
        variance = _resolve_variance(
            self.params.variance, refs.member.sum(axis=0), (~refs.member).sum(axis=0)
        )
        self.variance_ = variance
        self.mu_in_, self.std_in_ = _side_stats(
            refs.values, refs.member, variance, self.params.center
        )
        self.mu_out_, self.std_out_ = _side_stats(
            refs.values, ~refs.member, variance, self.params.center
        )

    def _score(self, target: TargetSignals) -> np.ndarray:
        o = target.values
        llr = _log_normal_pdf(o, self.mu_in_, self.std_in_) - _log_normal_pdf(
            o, self.mu_out_, self.std_out_
        )
        return llr.mean(axis=1)


class LiRAOffline(SignalAttack):
    """LiRA's one-sided offline test on OUT reference models (see the module docstring)."""

    name = "lira_offline"
    summary = (
        "LiRA offline: one-sided Gaussian test against OUT reference models only (Carlini et al.)"
    )
    paper = (
        "Carlini et al. 2022, Membership Inference Attacks From First Principles (S&P), Sec. IV-D"
    )
    references = "offline"
    uses_all_queries = True
    Params = LiRAParams

    def signal(self) -> SignalSpec:
        return SignalSpec("rescaled_logit")

    def _fit(self, refs: ReferenceSignals | None) -> None:
        assert refs is not None
        variance = _resolve_variance(self.params.variance, (~refs.member).sum(axis=0))
        self.variance_ = variance
        self.mu_out_, self.std_out_ = _side_stats(
            refs.values, ~refs.member, variance, self.params.center
        )

    def _score(self, target: TargetSignals) -> np.ndarray:
        return log_ndtr((target.values - self.mu_out_) / self.std_out_).mean(axis=1)
