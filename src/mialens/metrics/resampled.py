"""Leakage metrics of many weighted resamples of T targets' scores at once (the bootstrap).

A resample of the N scored samples is a row of multiplicities (sample ``i`` drawn
``counts[b, i]`` times), the same for every target. Each target's scores are sorted once,
by decreasing score, and split into its members and its non-members in that order, with
the tie groups of the non-members and, for each, the number of members ranked above it.
A resample only reweights those fixed sequences, so every metric is a prefix sum of
weights read at fixed positions: the cost is linear in resamples x targets x samples,
with no sort, search over all samples or per-sample ROC point per resample.

The values are those of :func:`mialens.metrics.roc.batch_metrics` on the explicitly
resampled arrays, bit for bit: the same integer counts divided in the same floating point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

_BLOCK_ELEMENTS = 1 << 18  # resampled samples per block: one target, a few replicates


@dataclass(frozen=True)
class RankedTarget:
    """One target's samples by decreasing score, split by membership.

    ``members``/``nonmembers``: sample indices in that order. ``group_starts``: the first
    non-member of each tie group of non-members (None when no two non-members tie).
    ``above``: per non-member group, the members in strictly higher-scored groups;
    ``above_or_tied``: those plus the members tied with the group (None when no member
    ties a non-member). ``peaks``: the non-member groups right after a member, the only
    ROC points where TPR - FPR can attain its maximum (elsewhere the FPR grew and the
    TPR did not).
    """

    members: np.ndarray
    nonmembers: np.ndarray
    group_starts: np.ndarray | None
    above: np.ndarray
    above_or_tied: np.ndarray | None
    peaks: np.ndarray


def rank_target(scores: np.ndarray, members: np.ndarray) -> RankedTarget:
    """The :class:`RankedTarget` of one row of scores and its membership."""
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    member = members[order]
    group = np.concatenate([[0], np.cumsum(ranked[1:] != ranked[:-1])])
    group_in, group_out = group[member], group[~member]
    starts = np.flatnonzero(np.r_[True, group_out[1:] != group_out[:-1]])
    above = np.searchsorted(group_in, group_out[starts], side="left")
    tied = np.searchsorted(group_in, group_out[starts], side="right")
    return RankedTarget(
        members=order[member],
        nonmembers=order[~member],
        group_starts=None if starts.size == group_out.size else starts,
        above=above,
        above_or_tied=None if np.array_equal(tied, above) else tied,
        peaks=np.flatnonzero(np.r_[True, above[1:] != above[:-1]]),
    )


def member_counts(counts: np.ndarray, members: np.ndarray) -> np.ndarray:
    """``(B, T)`` integers: the members of each target that each resample draws.

    One BLAS product in floating point, exact because every partial sum is an integer
    below the float's exact range (2**24 in float32, used when every row total is below).
    It runs on one thread: the product takes milliseconds, and BLAS's other threads
    would spin on the cores the audit's figure drawing uses for a second after it."""
    exact = np.float32 if int(counts.sum(axis=1).max()) < 2**24 else np.float64
    with threadpool_limits(limits=1, user_api="blas"):
        return (counts.astype(exact) @ members.T.astype(exact)).astype(np.int64)


def allowed_counts(n_neg: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``(b, L)``: the largest integer ``k <= n_neg`` with ``k / n_neg <= level``, in the
    floating point the ROC points are compared in (``k / n`` grows with ``k``)."""
    n = n_neg.astype(np.float64)[:, None]
    k = np.clip(np.floor(levels * n), 0, n)
    while True:
        up = (k + 1 <= n) & ((k + 1) / n <= levels)
        down = (k > 0) & (k / n > levels)
        if not (up.any() or down.any()):
            return k.astype(np.int64)
        k = k + up - down


def _prefix(weights: np.ndarray, dtype: type) -> np.ndarray:
    """Cumulative sums along the rows with a leading 0 column."""
    out = np.zeros((weights.shape[0], weights.shape[1] + 1), dtype=dtype)
    np.cumsum(weights, axis=1, dtype=dtype, out=out[:, 1:])
    return out


def _accepted_counts(
    target: RankedTarget, counts: np.ndarray, dtype: type
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per resample of ``counts``: ``tp``, the members accepted down to each member
    (prefix sums, ``(b, members + 1)``), ``neg``, the weight of each non-member group,
    ``fp``, the non-members accepted before each group (prefix sums), and ``tp_above``,
    the members above each group."""
    tp = _prefix(np.take(counts, target.members, axis=1), dtype)
    neg = np.take(counts, target.nonmembers, axis=1)
    if target.group_starts is not None:
        neg = np.add.reduceat(neg, target.group_starts, axis=1, dtype=dtype)
    fp = _prefix(neg, dtype)
    return tp, neg, fp, np.take(tp, target.above, axis=1)


def _members_accepted(
    tp: np.ndarray, tp_above: np.ndarray, fp: np.ndarray, allowed: np.ndarray
) -> np.ndarray:
    """``(b, L)``: the members above the first non-member group that would push the false
    positives past ``allowed`` (all members if none does)."""
    width = _leading_columns(fp[:, 1:], allowed.max(axis=1))
    first_over = _rowwise_search(fp[:, 1 : 1 + width], allowed)
    last = tp_above.shape[1]
    above = np.take_along_axis(tp_above, np.minimum(first_over, last - 1), axis=1)
    return np.where(first_over < last, above, tp[:, -1:])


def tpr_at_allowances(target: RankedTarget, allowances: np.ndarray) -> np.ndarray:
    """The TPR of the scored samples themselves (every weight 1) at the thresholds that
    accept at most ``allowances[j]`` non-members, read as :func:`resampled_metrics` reads
    the TPR at a level; ``allowances`` are integers in ``[0, non-members]``."""
    n = len(target.members) + len(target.nonmembers)
    tp, _, fp, tp_above = _accepted_counts(target, np.ones((1, n), np.int64), np.int64)
    allowed = np.asarray(allowances, dtype=np.int64)[None, :]
    return _members_accepted(tp, tp_above, fp, allowed)[0] / len(target.members)


def _block_metrics(
    target: RankedTarget, counts: np.ndarray, levels: np.ndarray, dtype: type
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUC ``(b,)``, advantage ``(b,)`` and TPR at each level ``(b, L)`` of one target
    under the ``b`` resamples ``counts``; sums are exact integers of ``dtype``."""
    tp, neg, fp, tp_above = _accepted_counts(target, counts, dtype)
    n_pos, n_neg = tp[:, -1].astype(np.float64), fp[:, -1].astype(np.float64)
    # Mann-Whitney: each non-member is outranked by the members above its tie group and,
    # for one half each, by those tied with it: weight x (above + above or tied) / 2.
    if target.above_or_tied is None:
        pairs = 2 * np.einsum("ij,ij->i", neg, tp_above, dtype=np.int64)
    else:
        tp_tied = np.take(tp, target.above_or_tied, axis=1)
        pairs = np.einsum("ij,ij->i", neg, tp_above + tp_tied, dtype=np.int64)
    auc = pairs / (2.0 * n_pos * n_neg)
    tpr_peak = np.take(tp_above, target.peaks, axis=1) / n_pos[:, None]
    fpr_peak = np.take(fp, target.peaks, axis=1) / n_neg[:, None]
    advantage = np.maximum((tpr_peak - fpr_peak).max(axis=1), 0.0)
    accepted = _members_accepted(tp, tp_above, fp, allowed_counts(fp[:, -1], levels))
    return auc, advantage, accepted / n_pos[:, None]


def _leading_columns(rows: np.ndarray, values: np.ndarray) -> int:
    """A number ``k`` of leading columns of ``rows`` (non-decreasing along each row) past
    whose last one every row exceeds its ``values[r]`` (all columns where some row never
    does): a search for ``values[r]`` or less in ``rows[r, :k]`` finds what one in the whole
    row finds. Probed at doubling widths, so ``k`` is about twice the least such at most."""
    width = rows.shape[1]
    probes = np.unique(np.geomspace(1, width, num=int(np.log2(width)) + 2).astype(np.int64))
    exceeds = (rows[:, probes - 1] > values[:, None]).all(axis=0)
    return int(probes[np.argmax(exceeds)]) if exceeds.any() else width


def _rowwise_search(rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``np.searchsorted(rows[r], values[r], side="right")`` for every row ``r`` at once:
    ``rows`` (non-decreasing, non-negative integers) are shifted each above the one
    before, so that one search of the flattened rows answers every row, exactly;
    ``values[r]`` lie in ``[0, rows[r, -1]]``."""
    n_rows, width = rows.shape
    step = int(rows[:, -1].max()) + 1
    shift = step * np.arange(n_rows, dtype=np.int64)[:, None]
    found = np.searchsorted((rows + shift).ravel(), (values + shift).ravel(), side="right")
    return found.reshape(values.shape) - width * np.arange(n_rows, dtype=np.int64)[:, None]


def resampled_metrics(
    scores: np.ndarray, members: np.ndarray, levels: np.ndarray, counts: np.ndarray
) -> dict[str, np.ndarray]:
    """AUC ``(B, T)``, advantage ``(B, T)`` and TPR ``(B, T, L)`` of T targets under B
    resamples.

    ``scores``/``members`` ``(T, N)`` and ``counts`` ``(B, N)`` (non-negative integers)
    are validated by the caller, and every resample leaves every target a member and a
    non-member (see :func:`mialens.metrics.roc.batch_metrics`).
    """
    n_boot, n_samples = counts.shape
    n_targets, n_levels = scores.shape[0], levels.size
    weights = counts.astype(np.min_scalar_type(int(counts.max())), copy=False)
    # every prefix sum is at most a row's total weight (a sum of two, in the AUC)
    dtype = np.int32 if 2 * int(counts.sum(axis=1).max()) < 2**31 else np.int64
    out = {
        "auc": np.empty((n_boot, n_targets)),
        "advantage": np.empty((n_boot, n_targets)),
        "tpr": np.empty((n_boot, n_targets, n_levels)),
    }
    block = max(1, _BLOCK_ELEMENTS // n_samples)
    for t in range(n_targets):
        target = rank_target(scores[t], members[t])
        for lo in range(0, n_boot, block):
            rows = slice(lo, lo + block)
            auc, adv, tpr = _block_metrics(target, weights[rows], levels, dtype)
            out["auc"][rows, t], out["advantage"][rows, t], out["tpr"][rows, t] = auc, adv, tpr
    return out
