"""Where a low-FPR threshold lies among the non-members, for intervals that cover.

The TPR at FPR ``a`` of a target with ``n`` non-members is read at the threshold that
accepts ``k = floor(a n)`` of them: ``c(k)``, where ``c(j)`` is the share of members
above the (j+1)-th highest non-member score (``c(-1) = 0``). The population's threshold
(FPR exactly ``a``) has ``J`` of the scored non-members above it, ``J ~ Binomial(n, a)``
whatever the score distribution (each non-member lies above it with probability ``a``,
independently; David & Nagaraja 2003, "Order Statistics", Sec. 2.1), so it lies between
the J-th and the (J+1)-th highest non-member, where the TPR runs from ``c(J - 1)`` to
``c(J)``. With few false positives allowed, ``J`` is often far from ``k`` relative to
``k``, and a resample of the scored samples cannot show it: it only re-weights the same
few highest non-member scores. Measured in ``benchmarks/interval_coverage.py``, the
percentile bootstrap's 95% interval of the TPR held the population TPR in 46-77% of
audits at ``k = 1`` and 81-83% at ``k = 2``.

:func:`threshold_shifts` adds that position to each bootstrap replicate: the TPR at a
``J`` drawn from its binomial law, at a uniform place between ``c(J - 1)`` and ``c(J)``,
minus ``c(k)``, on each target's own ROC. The targets share the replicate's two uniforms
(``J_t`` is the quantile of the first on each), the coupling under which a mean over
targets spreads most: the targets' non-members overlap, so their ``J_t`` are positively
dependent, in an unknown way, and the resamples move the threshold as well. The interval
is therefore conservative where it is applied (levels with fewer than
:data:`MIN_FALSE_POSITIVES_FOR_INTERVAL` false positives allowed on some target).
"""

from __future__ import annotations

import numpy as np
from scipy.special import bdtr

from mialens.metrics.resampled import rank_target, tpr_at_allowances
from mialens.metrics.roc import allowed_false_positives

MIN_FALSE_POSITIVES_FOR_INTERVAL = 10
"""The false positives every target must be allowed at a level (``floor(FPR x
non-members)``) for the plain percentile bootstrap interval of its TPR: from 7 on it held
the population TPR in 92-98% of simulated audits (nominal 95%); below, the interval adds
the threshold's position (:func:`threshold_shifts`), and held it in all 300 audits of
every setting at 1-7, 2.1-2.7 times as wide."""


def widened_levels(members: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``(L,)`` booleans: the levels at which some target (a row of ``members``) is allowed
    fewer than :data:`MIN_FALSE_POSITIVES_FOR_INTERVAL` false positives."""
    n_neg = (~members).sum(axis=1)
    return np.array(
        [
            min(allowed_false_positives(int(n), float(lv)) for n in n_neg)
            < MIN_FALSE_POSITIVES_FOR_INTERVAL
            for lv in levels
        ],
        dtype=bool,
    )


def binomial_quantiles(n: int, rate: float, uniforms: np.ndarray) -> np.ndarray:
    """The ``Binomial(n, rate)`` quantile of each of ``uniforms``: the least ``j`` whose
    CDF reaches it (the CDF tabulated up to 12 standard deviations past the mean, beyond
    which a uniform lands with probability below 1e-30)."""
    mean = n * rate
    top = int(min(n, np.ceil(mean + 12 * np.sqrt(mean + 1) + 12)))
    cdf = bdtr(np.arange(top + 1), n, rate)
    return np.minimum(np.searchsorted(cdf, uniforms, side="left"), top)


def threshold_shifts(
    scores: np.ndarray, members: np.ndarray, levels: np.ndarray, uniforms: np.ndarray
) -> np.ndarray:
    """``(B, L)``: what to add to each replicate's mean TPR over targets at each level,
    ``mean_t (c_t(J_bt - 1) + v_b (c_t(J_bt) - c_t(J_bt - 1)) - c_t(k_t))`` with ``J_bt``
    the ``Binomial(n_t, level)`` quantile of ``uniforms[b, 0]`` and ``v_b = uniforms[b,
    1]`` (module docstring); 0 at levels every target allows enough false positives
    (:func:`widened_levels`). ``scores``/``members`` are the validated ``(T, N)`` rows."""
    widen = widened_levels(members, levels)
    shifts = np.zeros((len(uniforms), len(levels)))
    if not widen.any():
        return shifts
    n_targets = scores.shape[0]
    for t in range(n_targets):
        ranked = rank_target(scores[t], members[t])
        n_neg = len(ranked.nonmembers)
        for i in np.flatnonzero(widen):
            level = float(levels[i])
            drawn = binomial_quantiles(n_neg, level, uniforms[:, 0])
            k = allowed_false_positives(n_neg, level)
            top = int(max(drawn.max(), k))
            curve = np.r_[0.0, tpr_at_allowances(ranked, np.arange(top + 1))]  # c(j - 1)
            below, above = curve[drawn], curve[drawn + 1]
            position = below + uniforms[:, 1] * (above - below)
            shifts[:, i] += (position - curve[k + 1]) / n_targets
    return shifts
