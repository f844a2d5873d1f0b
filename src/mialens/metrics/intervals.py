"""Confidence intervals for leakage metrics over several target models."""

from __future__ import annotations

import numpy as np
from scipy.special import stdtrit

from mialens.errors import ConfigError, DataError
from mialens.metrics.resampled import member_counts, resampled_metrics
from mialens.metrics.roc import _check_levels, _check_rows
from mialens.metrics.threshold_position import threshold_shifts, widened_levels
from mialens.seeding import rng
from mialens.validation import check_finite

_MAX_SKIPPED = 0.1  # largest fraction of bootstrap replicates that may be dropped


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie strictly between 0 and 1; got {confidence}.")


def summarize(
    values: object, confidence: float = 0.95, bounds: tuple[float, float] | None = None
) -> dict[str, float]:
    """Mean, spread and Student-t interval of a metric over T targets.

    Returns ``mean``, ``std`` (ddof=1), ``min``, ``max``, ``n`` and the t interval
    ``mean ± t_{(1+confidence)/2, T-1} · std / sqrt(T)`` as ``ci_low``/``ci_high``,
    clipped to ``bounds`` when the metric cannot leave them (a rate in [0, 1]): the
    clipped interval covers the true value whenever the unclipped one does.
    With a single target (T == 1) there is no spread to estimate: ``std`` is 0 and
    the interval degenerates to ``[value, value]``; it is not a confidence interval.
    """
    _check_confidence(confidence)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise DataError(f"values must be a non-empty 1-D array (one per target); got {v.shape}.")
    check_finite(v, "values")
    n = v.size
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    half = 0.0
    if n > 1:  # stdtrit is the t quantile scipy.stats.t.ppf computes (without scipy.stats)
        half = float(stdtrit(n - 1, (1 + confidence) / 2)) * std / np.sqrt(n)
    return {
        "mean": mean,
        "std": std,
        "min": float(v.min()),
        "max": float(v.max()),
        "n": n,
        "ci_low": mean - half if bounds is None else max(mean - half, bounds[0]),
        "ci_high": mean + half if bounds is None else min(mean + half, bounds[1]),
    }


def _resample_counts(n_boot: int, n_samples: int, seed: int) -> np.ndarray:
    """``(n_boot, n_samples)``: how often each replicate draws each sample (the positions
    drawn with replacement from the seed's bootstrap stream)."""
    draws = rng(seed, "bootstrap").integers(0, n_samples, size=(n_boot, n_samples))
    offsets = n_samples * np.arange(n_boot)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_boot * n_samples)
    return counts.reshape(n_boot, n_samples).astype(np.min_scalar_type(int(counts.max())))


def _usable(counts: np.ndarray, members: np.ndarray) -> np.ndarray:
    """The replicates that draw a member and a non-member of every target (a DataError
    when more than :data:`_MAX_SKIPPED` of them do not)."""
    n_pos = member_counts(counts, members)  # (n_boot, T)
    keep = ((n_pos > 0) & (n_pos < counts.shape[1])).all(axis=1)
    n_skipped = int(len(keep) - keep.sum())
    if n_skipped > _MAX_SKIPPED * len(keep):
        raise DataError(
            f"{n_skipped} of {len(keep)} bootstrap replicates drew no member or no non-member "
            "for some target; there are too few members or non-members per target."
        )
    return keep


def bootstrap_ci(
    scores: object,
    members: object,
    fpr_levels: object,
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    widen: bool = True,
) -> dict:
    """Percentile-bootstrap intervals of the mean over targets of each metric.

    ``scores``/``members`` have shape (T, N): T targets scored on the same N samples.
    Each replicate draws the N sample positions with replacement once and applies that
    draw to every target row, so the interval reflects the sampling of the audited
    samples shared by all targets (Efron & Tibshirani 1993, percentile method).
    Membership differs between rows, so the draw cannot be stratified; replicates in
    which some row lacks a member or a non-member are skipped (DataError if more than
    10% are). Deterministic given ``seed``.

    At a level where some target is allowed fewer than
    :data:`~mialens.metrics.threshold_position.MIN_FALSE_POSITIVES_FOR_INTERVAL` false
    positives, the resamples alone make the TPR interval too narrow; with ``widen`` each
    replicate also carries the spread of the threshold's position among the non-members
    (:func:`~mialens.metrics.threshold_position.threshold_shifts`; a conservative
    interval, clipped to [0, 1]).

    Returns ``{"auc": {"low", "high"}, "advantage": {...}, "tpr_at_fpr": {level:
    {...}}, "widened": [levels widened], "n_boot": replicates used, "n_skipped":
    replicates skipped}``.
    """
    _check_confidence(confidence)
    if n_boot < 1:
        raise ConfigError(f"n_boot must be at least 1; got {n_boot}.")
    s, m = _check_rows(scores, members)
    levels = _check_levels(fpr_levels)
    counts = _resample_counts(n_boot, s.shape[1], seed)
    keep = _usable(counts, m)
    n_skipped = int(n_boot - keep.sum())
    boot = resampled_metrics(s, m, levels, counts[keep])
    alpha = (1 - confidence) / 2

    def interval(values: np.ndarray) -> dict[str, float]:
        low, high = np.quantile(values, [alpha, 1 - alpha])
        return {"low": float(low), "high": float(high)}

    tpr = boot["tpr"].mean(axis=1)  # (n_kept, L)
    widened = widened_levels(m, levels) if widen else np.zeros(len(levels), dtype=bool)
    if widened.any():
        uniforms = rng(seed, "bootstrap", "threshold position").random((n_boot, 2))[keep]
        tpr = np.clip(tpr + threshold_shifts(s, m, levels, uniforms), 0.0, 1.0)
    return {
        "auc": interval(boot["auc"].mean(axis=1)),
        "advantage": interval(boot["advantage"].mean(axis=1)),
        "tpr_at_fpr": {float(v): interval(tpr[:, i]) for i, v in enumerate(levels)},
        "widened": [float(v) for v, w in zip(levels, widened, strict=True) if w],
        "n_boot": n_boot - n_skipped,
        "n_skipped": n_skipped,
    }
