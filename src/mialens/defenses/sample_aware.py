"""Sample-aware defences: find the training samples likely to leak, then protect them.

Khalil et al. 2025 find that the samples which leak in well-generalising models are
intra-class outliers; the defender can find such samples in its own training data
without any attack. Each model's training set is scored with an input-space outlier
measure within each class (see :mod:`mialens.analysis.outliers`), the top ``fraction``
of every class is flagged, and the flagged samples are removed, down-weighted,
smoothed, or trained with clipped, noised gradients. The uniform counterpart flags as
many samples of each class at random.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mialens.audit.design import AuditSetup
from mialens.defenses.config import SampleAwareConfig
from mialens.seeding import int_seed, rng

_MEASURE = {
    "knn": "knn",
    "lof": "lof",
    "isolation_forest": "iforest",
    "centroid": "centroid_euclidean",
}


def flag_samples(x: np.ndarray, y: np.ndarray, config: SampleAwareConfig, seed: int) -> np.ndarray:
    """Boolean flags of the ``fraction`` most atypical samples of each class (or random
    ones for the uniform counterpart)."""
    flags = np.zeros(len(y), dtype=bool)
    score = None
    if not config.counterpart:
        from mialens.analysis.outliers import geometric_measures  # loads scikit-learn

        score = geometric_measures(x, y, seed=seed % 2**32)[_MEASURE[config.detector]]
    draw = rng(seed, "sample-aware")
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        count = round(config.fraction * idx.size)
        if count == 0:
            continue
        if score is None:
            chosen = draw.choice(idx, count, replace=False)
        else:
            values = np.nan_to_num(score[idx], nan=-np.inf)
            chosen = idx[np.argsort(-values, kind="stable")[:count]]
        flags[chosen] = True
    return flags


def training_adjustment(
    x: np.ndarray, y: np.ndarray, config: SampleAwareConfig, seed: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """What the defence does to one model's training set ``(x, y)``: the samples kept
    (a boolean mask), and for the kept ones per-sample loss weights, label smoothing
    and gradient clip norms (``inf``: unclipped), each None when unchanged."""
    flags = flag_samples(x, y, config, seed)
    if config.action == "remove":
        return ~flags, None, None, None
    keep = np.ones(len(y), dtype=bool)
    if config.action == "downweight":
        return keep, np.where(flags, config.weight, 1.0), None, None
    if config.action == "clip":
        return keep, None, None, np.where(flags, config.clip_norm, np.inf)
    return keep, None, np.where(flags, config.smoothing, 0.0), None


def adjusted_setup(setup: AuditSetup, config: SampleAwareConfig) -> AuditSetup:
    """The audit with each model's training set adjusted by the defence: flagged samples
    removed (they are then non-members of that model: the keep mask follows), or given
    their own loss weight, label smoothing or gradient clipping."""
    plan, seed = setup.plan, setup.config.audit.seed
    keep = setup.keep.copy()
    positions, weights, smoothing, clip_norms = [], [], [], []
    for k, pos in enumerate(plan.train_positions):
        kept, weight, smooth, clip = training_adjustment(
            plan.dataset.x[pos], plan.dataset.y[pos], config, int_seed(seed, "sample-aware", k)
        )
        keep[k, np.flatnonzero(keep[k])[~kept]] = False
        positions.append(pos[kept])
        weights.append(weight)
        smoothing.append(smooth)
        clip_norms.append(clip)
    plan = replace(
        plan,
        train_positions=positions,
        sample_weights=None if weights[0] is None else weights,
        sample_smoothing=None if smoothing[0] is None else smoothing,
        sample_clip_norms=None if clip_norms[0] is None else clip_norms,
        clip_noise=config.noise_multiplier * config.clip_norm if clip_norms[0] is not None else 0.0,
    )
    return replace(setup, plan=plan, keep=keep)
