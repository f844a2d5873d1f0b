"""Exposure of secret-sharer canaries, from the log-perplexities of candidates.

Carlini et al. 2019, "The Secret Sharer: Evaluating and Testing Unintended Memorization
in Neural Networks" (USENIX Security), Sec. 4. A model's log-perplexity of a sequence is
``Px(x_1..x_n) = -sum_i log Pr(x_i | x_1..x_{i-1})`` (the paper takes log base 2; the
base changes neither a rank nor a fitted CDF value). For a canary with secret ``s[r]``
among the candidates ``R``,

- ``rank(s[r]) = |{r' in R : Px(s[r']) <= Px(s[r])}|``: 1 for the most likely candidate;
  the canary counts itself and every candidate tied with it, so ties count against the
  canary and the exposure below is never overstated whichever way they were broken;
- ``exposure(s[r]) = log2 |R| - log2 rank(s[r])``, in ``[0, log2 |R|]``. A random
  secret the model did not train on has a uniform rank, so its exposure is about
  ``-log2 U`` for a uniform ``U``: ``1 / ln 2``, about 1.44 bits, on average.

Equivalently ``exposure = -log2 Pr_{r' ~ U(R)}[Px(s[r']) <= Px(s[r])]``, which Sec. 4.3
approximates without enumerating ``R``: fit a skew-normal distribution to the
log-perplexities of uniformly sampled candidates and take ``-log2 F(Px(s[r]))``, ``F``
the fitted CDF (the released TF Privacy code, ``compute_exposure_extrapolation``, fits
``scipy.stats.skewnorm`` the same way). :func:`exact_exposure` computes the first from a
full enumeration, :func:`extrapolated_exposure` the second from a sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from mialens.errors import DataError
from mialens.validation import check_finite

MIN_FIT_SAMPLE = 100  # fewer sampled candidates than this give no usable skew-normal fit


def _vector(values: object, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise DataError(
            f"{name} must be a non-empty 1-D array of log-perplexities, got {arr.shape}"
        )
    return check_finite(arr, name)


@dataclass(frozen=True)
class ExactExposure:
    """Exact exposures of ``k`` canaries among ``space`` candidates (each canary and the
    same ``space - 1`` others): ``rank`` as in the paper (ties against the canary),
    ``best_rank`` had every tie been broken for it, ``ties`` the other candidates of
    equal log-perplexity (a canary is *tied* when there is one), and ``exposure`` from
    ``rank``. All arrays are ``(k,)``."""

    exposure: np.ndarray
    rank: np.ndarray
    best_rank: np.ndarray
    ties: np.ndarray
    space: int

    @property
    def tied(self) -> np.ndarray:
        return self.ties > 0

    @property
    def best_exposure(self) -> np.ndarray:
        """The exposure had every tie been broken in the canary's favour."""
        return math.log2(self.space) - np.log2(self.best_rank)


def exact_exposure(canary_logppl: object, others_logppl: object) -> ExactExposure:
    """Exposure of each canary among itself and ``others_logppl``: the log-perplexities of
    every other candidate of the space (``|R| = len(others) + 1``)."""
    canary = _vector(canary_logppl, "canary_logppl")
    others = np.sort(_vector(others_logppl, "others_logppl"))
    below = np.searchsorted(others, canary, side="left")
    at_or_below = np.searchsorted(others, canary, side="right")
    rank = at_or_below + 1
    space = others.size + 1
    return ExactExposure(
        exposure=math.log2(space) - np.log2(rank),
        rank=rank.astype(np.int64),
        best_rank=(below + 1).astype(np.int64),
        ties=(at_or_below - below).astype(np.int64),
        space=space,
    )


@dataclass(frozen=True)
class ExtrapolatedExposure:
    """Exposures of ``k`` canaries from a skew-normal fit (``shape``, ``loc``, ``scale``
    of ``scipy.stats.skewnorm``) to ``sample_size`` sampled candidates' log-perplexities.

    ``beyond_sample`` flags a canary less perplexing than every sampled candidate: its
    exposure rests on the fitted tail alone (the sample itself resolves at most
    ``log2(sample_size + 1)`` bits). ``ks_statistic`` is the Kolmogorov-Smirnov distance
    between the sample and the fit: the extrapolation is only as good as the fit.
    """

    exposure: np.ndarray
    beyond_sample: np.ndarray
    shape: float
    loc: float
    scale: float
    sample_size: int
    ks_statistic: float


def extrapolated_exposure(canary_logppl: object, sample_logppl: object) -> ExtrapolatedExposure:
    """``-log2 F(Px(canary))`` with ``F`` the skew-normal CDF fitted (maximum likelihood,
    ``scipy.stats.skewnorm.fit``) to ``sample_logppl``, the log-perplexities of candidates
    drawn uniformly from the space (the canaries excluded). The value is not capped at
    ``log2 |R|``: above it, the fit puts less than one candidate's share of mass below
    the canary (exact exposure would be the maximum, rank 1)."""
    canary = _vector(canary_logppl, "canary_logppl")
    sample = _vector(sample_logppl, "sample_logppl")
    if sample.size < MIN_FIT_SAMPLE:
        raise DataError(
            f"a skew-normal fit needs at least {MIN_FIT_SAMPLE} sampled candidates, got "
            f"{sample.size}"
        )
    if np.ptp(sample) == 0:
        raise DataError("every sampled candidate has the same log-perplexity: nothing to fit")
    shape, loc, scale = stats.skewnorm.fit(sample)
    fitted = stats.skewnorm(shape, loc, scale)
    return ExtrapolatedExposure(
        exposure=-fitted.logcdf(canary) / math.log(2),
        beyond_sample=canary < sample.min(),
        shape=float(shape),
        loc=float(loc),
        scale=float(scale),
        sample_size=int(sample.size),
        ks_statistic=float(stats.kstest(sample, fitted.cdf).statistic),
    )
