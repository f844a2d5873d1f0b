"""Secret-sharer canaries across the targets of an audit, per repetition count.

The audit trains ``T`` target models on group-level halves of a data set that
:func:`~mialens.data.secret_canaries.insert_canaries` extended, so each canary (one group)
trained about half of them. Two summaries read its results:

- :func:`exposure_by_repetition`: from the exposure of every canary under every target
  ``(T, K)`` (:mod:`mialens.attacks.exposure`), the mean exposure of the canaries each
  target trained, per repetition count, and the paired differences between counts
  (``4 - 1``, ``16 - 4``): per target, the mean over its trained canaries of the larger
  count minus that of the smaller, then the mean of these differences over targets with
  its Student-t interval (:func:`mialens.metrics.summarize`). The targets are taken as
  independent replicates (each has its own seed and half; a keep mask that makes every
  group IN for exactly half of them couples the halves slightly, which the interval
  ignores), the difference is paired within a target, and with the 8 to 32 targets a
  language-model audit trains a percentile bootstrap over targets is too narrow (it has
  no t quantile and a ``(T-1)/T`` variance), hence the t interval. It is an interval
  over targets for these canaries: their secrets are fixed across targets. The mean over
  untrained canaries (``out_mean``, about 1.44 bits for exact ranks) is the baseline a
  never-seen secret gets.
- :func:`canary_tpr_at_fpr`: the canary-only TPR at low FPR of an attack's scores
  ``(T, N)``. Each target's threshold is the one of
  :func:`~mialens.metrics.roc.flags_at_fpr` on that target's *natural* non-members (every
  sample that is not a canary copy and did not train it), so it accepts at most a
  fraction ``level`` of them, tie groups whole; the TPR at a repetition count is the share
  of (target, trained canary of that count) pairs its target's threshold accepts. The
  canaries are positives only, never negatives: there are too few OUT canaries to resolve
  a low FPR. ``out_canary_fpr``, the share of (target, untrained canary) pairs accepted
  by the same thresholds, says whether the natural FPR carries over to canaries
  (per-sample calibrated scores such as LiRA's make it so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from mialens.data.secret_canaries import CanaryRecord
from mialens.errors import DataError
from mialens.metrics.intervals import summarize
from mialens.metrics.roc import check_target_scores, flags_at_fpr, fpr_resolvable
from mialens.validation import check_finite


def _copy_columns(record: CanaryRecord, sample_ids: object) -> list[np.ndarray]:
    """The columns of each canary's copies among ``sample_ids``."""
    position = {sample_id: i for i, sample_id in enumerate(np.asarray(sample_ids).astype(str))}
    columns = []
    for canary in record.canaries:
        cols = np.array([position[c] for c in canary.copy_ids if c in position], dtype=np.int64)
        if not cols.size:
            raise DataError(f"canary {canary.canary_id} has no copy among the sample ids")
        columns.append(cols)
    return columns


def canary_membership(record: CanaryRecord, sample_ids: object, members: object) -> np.ndarray:
    """``(T, K)``: whether target ``t`` trained canary ``k``, from the audit's member mask
    ``(T, N)`` over ``sample_ids``; refused where a canary's copies are IN for a target
    and OUT for it at once (the keep mask must be drawn per group)."""
    members = np.asarray(members)
    if members.dtype != bool or members.ndim != 2 or members.shape[1] != len(sample_ids):
        raise DataError(
            f"members must be a boolean (targets, {len(sample_ids)}) mask, got "
            f"{members.dtype} {members.shape}"
        )
    trained = np.empty((members.shape[0], len(record.canaries)), dtype=bool)
    for k, cols in enumerate(_copy_columns(record, sample_ids)):
        copies = members[:, cols]
        if (copies.any(axis=1) != copies.all(axis=1)).any():
            raise DataError(
                f"the copies of canary {record.canaries[k].canary_id} are IN and OUT of one "
                "target at once: draw the keep mask per group"
            )
        trained[:, k] = copies[:, 0]
    return trained


def _check_matrix(exposure: object, trained: object, k: int) -> tuple[np.ndarray, np.ndarray]:
    e = check_finite(np.asarray(exposure, dtype=np.float64), "exposure")
    m = np.asarray(trained)
    if e.ndim != 2 or e.shape[1] != k or m.shape != e.shape or m.dtype != bool:
        raise DataError(
            f"exposure and trained must be (targets, {k}) arrays, float and boolean; got "
            f"{e.shape} and {m.dtype} {m.shape}"
        )
    return e, m


def _mean_where(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Row means of ``values`` over ``where``; NaN for a row with nothing."""
    count = where.sum(axis=1)
    total = np.where(where, values, 0.0).sum(axis=1)
    return np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)


@dataclass(frozen=True)
class RepetitionExposure:
    """Exposure at one repetition count: ``in_per_target`` is each target's mean over the
    canaries of this count it trained (NaN for none), ``in_mean`` their mean over the
    targets that trained one, ``out_mean`` the same over the untrained canaries."""

    repetitions: int
    canaries: int
    in_per_target: list[float]
    in_mean: float
    out_mean: float


@dataclass(frozen=True)
class ExposureDifference:
    """``in(larger) - in(smaller)`` per target that trained canaries of both counts, and
    its mean over those ``n`` targets with a Student-t interval at ``confidence``."""

    smaller: int
    larger: int
    per_target: list[float]
    mean: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float


def exposure_by_repetition(
    exposure: object,
    trained: object,
    record: CanaryRecord,
    pairs: Sequence[tuple[int, int]] | None = None,
    confidence: float = 0.95,
) -> tuple[list[RepetitionExposure], list[ExposureDifference]]:
    """Per repetition count and per pair of counts (default: consecutive counts, e.g.
    ``(1, 4), (4, 16)``), from ``exposure (T, K)`` and ``trained (T, K)`` in record order."""
    e, m = _check_matrix(exposure, trained, len(record.canaries))
    counts = np.array([c.repetitions for c in record.canaries])
    per_count = {}
    for r in record.repetition_counts:
        of_r = counts == r
        inside, outside = _mean_where(e, m & of_r), _mean_where(e, ~m & of_r)
        per_count[r] = RepetitionExposure(
            repetitions=r,
            canaries=int(of_r.sum()),
            in_per_target=inside.tolist(),
            in_mean=float(np.nanmean(inside)) if np.isfinite(inside).any() else float("nan"),
            out_mean=float(np.nanmean(outside)) if np.isfinite(outside).any() else float("nan"),
        )
    steps = record.repetition_counts
    differences = [
        _difference(per_count, a, b, confidence)
        for a, b in (pairs if pairs is not None else pairwise(steps))
    ]
    return list(per_count.values()), differences


def _difference(
    per_count: dict[int, RepetitionExposure], a: int, b: int, confidence: float
) -> ExposureDifference:
    if a not in per_count or b not in per_count:
        raise DataError(f"no canaries inserted {a} or {b} times (counts: {sorted(per_count)})")
    d = np.array(per_count[b].in_per_target) - np.array(per_count[a].in_per_target)
    d = d[np.isfinite(d)]
    if d.size < 2:
        raise DataError(
            f"the difference {b} - {a} needs 2 or more targets that trained canaries of both "
            f"counts, got {d.size}: train more targets or insert more canaries"
        )
    s = summarize(d, confidence)
    return ExposureDifference(
        a, b, d.tolist(), s["mean"], s["ci_low"], s["ci_high"], int(s["n"]), confidence
    )


@dataclass(frozen=True)
class CanaryRate:
    """Canary-only rates at one FPR level and repetition count (module docstring):
    ``tpr`` pooled over (target, trained canary) pairs (``n_trained`` of them),
    ``tpr_per_target`` over the targets that trained one of these canaries, their mean
    with a Student-t interval (clipped to [0, 1]; a single value with one such target),
    ``per_canary``: the share of the
    targets that trained each canary that accept it (NaN if none trained it),
    ``out_canary_fpr`` over the untrained pairs (NaN if none), and ``resolved``: every
    target has at least ``1 / level`` natural non-members."""

    level: float
    repetitions: int
    tpr: float
    n_trained: int
    tpr_per_target: list[float]
    tpr_mean: float
    ci_low: float
    ci_high: float
    per_canary: list[float]
    out_canary_fpr: float
    resolved: bool


def _natural_thresholds(
    scores: np.ndarray, members: np.ndarray, canary_cols: np.ndarray, level: float
) -> np.ndarray:
    """``(T, N)`` acceptance at each target's FPR-``level`` threshold set on its natural
    non-members: canary copies are marked members here so that none is a negative."""
    as_member = members.copy()
    as_member[:, canary_cols] = True
    return flags_at_fpr(scores, as_member, level)


def canary_tpr_at_fpr(
    scores: object,
    members: object,
    sample_ids: object,
    record: CanaryRecord,
    levels: Sequence[float] = (0.01, 0.001),
) -> list[CanaryRate]:
    """The canary-only rates of the module docstring for every level and repetition count,
    from an attack's ``scores (T, N)`` (higher = member) and the member mask ``(T, N)``
    over ``sample_ids`` (each canary is read at its first copy there)."""
    s, m = check_target_scores(scores, members)
    check_finite(s, "scores")
    trained = canary_membership(record, sample_ids, m)
    copies = _copy_columns(record, sample_ids)
    canary_cols = np.concatenate(copies)
    natural = np.ones(s.shape[1], dtype=bool)
    natural[canary_cols] = False
    n_out = (~m & natural).sum(axis=1)
    if n_out.min() == 0:
        raise DataError("every target needs natural (non-canary) non-members to set its FPR")
    first = np.array([cols[0] for cols in copies])
    counts = np.array([c.repetitions for c in record.canaries])
    rates = []
    for level in levels:
        accepted = _natural_thresholds(s, m, canary_cols, float(level))[:, first]
        resolved = all(fpr_resolvable(int(n), float(level)) for n in n_out)
        for r in record.repetition_counts:
            rates.append(
                _rate(accepted[:, counts == r], trained[:, counts == r], level, r, resolved)
            )
    return rates


def _rate(
    accepted: np.ndarray, trained: np.ndarray, level: float, r: int, resolved: bool
) -> CanaryRate:
    hits = accepted & trained
    has = trained.any(axis=1)
    per_target = hits[has].sum(axis=1) / trained[has].sum(axis=1)
    if not per_target.size:
        raise DataError(f"no target trained a canary inserted {r} times")
    s = summarize(per_target, bounds=(0.0, 1.0))
    n_canary = trained.sum(axis=0)
    per_canary = np.divide(
        hits.sum(axis=0), n_canary, out=np.full(n_canary.shape, np.nan), where=n_canary > 0
    )
    untrained = ~trained
    return CanaryRate(
        level=float(level),
        repetitions=r,
        tpr=float(hits.sum() / trained.sum()),
        n_trained=int(trained.sum()),
        tpr_per_target=per_target.tolist(),
        tpr_mean=s["mean"],
        ci_low=s["ci_low"],
        ci_high=s["ci_high"],
        per_canary=per_canary.tolist(),
        out_canary_fpr=float((accepted & untrained).sum() / untrained.sum())
        if untrained.any()
        else float("nan"),
        resolved=resolved,
    )
