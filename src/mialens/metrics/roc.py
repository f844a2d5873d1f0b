"""ROC-based leakage metrics of membership-inference attacks.

Scores are floats where higher means "more likely a member"; ``members`` is boolean
(True = training member). The headline number is the TPR at a low FPR on the ROC curve
(Carlini et al. 2022, "Membership Inference Attacks From First Principles", Sec. III);
AUC and membership advantage (Yeom et al. 2018) are secondary.

Tied scores form one ROC point: an attack thresholding its score accepts a tie group
entirely or not at all, so no metric here interpolates inside a tie group. A large tie
group can straddle a low FPR level: :func:`level_ties` flags the level *unreachable* when
the best threshold at or below it attains less than half the FPR a tie-free attack would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mialens.errors import ConfigError, DataError
from mialens.metrics.resampled import member_counts, resampled_metrics
from mialens.validation import check_finite, check_member_mask


def _as_scores(scores: object, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"scores must be a numeric array: {exc}") from exc
    if arr.ndim != ndim:
        shape = "(n_samples,)" if ndim == 1 else "(n_targets, n_samples)"
        raise DataError(f"scores must have shape {shape}; got shape {arr.shape}.")
    return check_finite(arr, "scores")


def _check_classes(n_members: np.ndarray, n_samples: int) -> None:
    """Raise unless every row has at least one member and one non-member."""
    for count, missing in ((n_members, "member"), (n_samples - n_members, "non-member")):
        bad = np.flatnonzero(np.atleast_1d(count) == 0)
        if bad.size:
            where = "" if np.ndim(count) == 0 else f" in target rows {bad[:5].tolist()}"
            raise DataError(
                f"no {missing}{where}: a ROC curve needs at least one member and one "
                "non-member score."
            )


def _check_pair(scores: object, members: object) -> tuple[np.ndarray, np.ndarray]:
    s = _as_scores(scores, 1)
    m = check_member_mask(members, s.shape)
    _check_classes(np.count_nonzero(m), s.size)
    return s, m


def _check_rows(scores: object, members: object) -> tuple[np.ndarray, np.ndarray]:
    s = _as_scores(scores, 2)
    m = check_member_mask(members, s.shape)
    _check_classes(np.count_nonzero(m, axis=1), s.shape[1])
    return s, m


def _check_levels(fpr_levels: object) -> np.ndarray:
    levels = np.atleast_1d(np.asarray(fpr_levels, dtype=np.float64))
    if levels.ndim != 1 or levels.size == 0:
        raise ConfigError(f"fpr levels must be a non-empty list of floats; got {fpr_levels!r}.")
    if not (np.isfinite(levels).all() and (levels >= 0).all() and (levels <= 1).all()):
        raise ConfigError(f"fpr levels must lie in [0, 1]; got {levels.tolist()}.")
    return levels


def roc_curve(scores: object, members: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr, thresholds)``, one per distinct score plus the origin.

    Thin validated wrapper of ``sklearn.metrics.roc_curve(members, scores,
    drop_intermediate=False)``; ``thresholds[0]`` is ``inf`` (nothing accepted).
    """
    from sklearn.metrics import roc_curve as sklearn_roc_curve  # loads much of scikit-learn

    s, m = _check_pair(scores, members)
    return sklearn_roc_curve(m, s, drop_intermediate=False)


def auc(scores: object, members: object) -> float:
    """Area under the ROC curve: P(member score > non-member score), ties counting 1/2."""
    from sklearn.metrics import roc_auc_score

    s, m = _check_pair(scores, members)
    return float(roc_auc_score(m, s))


def _advantage(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(np.max(tpr - fpr))


def _tpr_at(fpr: np.ndarray, tpr: np.ndarray, level: float) -> float:
    return float(tpr[fpr <= level].max())  # fpr[0] == 0, so never empty


def advantage(scores: object, members: object) -> float:
    """Membership advantage max_t TPR(t) − FPR(t) over thresholds (Yeom et al. 2018).

    The trivial thresholds (accept nothing / everything) are included, so it is >= 0.
    """
    fpr, tpr, _ = roc_curve(scores, members)
    return _advantage(fpr, tpr)


def tpr_at_fpr(scores: object, members: object, fpr: float) -> float:
    """Largest TPR among ROC points with FPR <= ``fpr`` (Carlini et al. 2022, Sec. III).

    No interpolation: a tie group is accepted entirely or not at all. Check
    :func:`fpr_resolvable` before reporting a value at a low level.
    """
    level = float(_check_levels(fpr)[0])
    roc_fpr, roc_tpr, _ = roc_curve(scores, members)
    return _tpr_at(roc_fpr, roc_tpr, level)


def fpr_resolvable(n_nonmembers: int, fpr: float) -> bool:
    """Whether ``n_nonmembers`` non-members can resolve FPR level ``fpr``.

    True iff the smallest non-zero FPR, ``1 / n_nonmembers``, is <= ``fpr`` (i.e.
    ``n_nonmembers * fpr >= 1``), compared in the same floating point as the ROC
    points. Otherwise the only FPR <= ``fpr`` is 0 and TPR@FPR is a TPR at FPR 0.
    """
    return n_nonmembers > 0 and 1.0 / n_nonmembers <= fpr


def allowed_false_positives(n_out: int, level: float) -> int:
    """The most non-members a threshold may accept at FPR <= ``level``, compared in the
    same floating point as the ROC points (``count / n_out``)."""
    count = int(np.floor(level * n_out))
    while count + 1 <= n_out and (count + 1) / n_out <= level:
        count += 1
    while count > 0 and count / n_out > level:
        count -= 1
    return count


def check_target_scores(scores: object, members: object) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(T, N)`` scores (float64) and membership of ``T`` targets: one shape,
    and every target with at least one non-member."""
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(members, dtype=bool)
    if s.ndim != 2 or s.shape != m.shape:
        raise DataError(
            f"scores and members must be (targets, samples) arrays of one shape; got "
            f"{s.shape} and {m.shape}"
        )
    if m.all(axis=1).any():
        raise DataError("every target needs at least one non-member")
    return s, m


def flags_at_fpr(scores: np.ndarray, members: np.ndarray, level: float) -> np.ndarray:
    """``(T, N)``: whether target ``t``'s threshold at FPR ``level`` accepts sample ``i``.

    The threshold is the one of :func:`mialens.metrics.tpr_at_fpr`: the largest TPR whose
    FPR is at most ``level``, accepting tie groups whole, so the share of a target's
    members it flags is exactly that target's TPR at ``level``.
    """
    s, m = check_target_scores(scores, members)
    flags = np.empty(s.shape, dtype=bool)
    for t in range(s.shape[0]):
        out = np.sort(s[t, ~m[t]])[::-1]
        allowed = allowed_false_positives(out.size, level)
        flags[t] = True if allowed >= out.size else s[t] > out[allowed]
    return flags


REACH_FRACTION = 0.5  # a level is reachable if some threshold attains this share of its FPR


def tie_groups(scores: object, members: object) -> tuple[np.ndarray, np.ndarray]:
    """Member and non-member counts of each group of equal scores, by decreasing score.

    Their cumulative sums over the groups are the ROC's true and false positive counts
    (the ROC points of :func:`roc_curve` after the origin).
    """
    return _group_counts(*_check_pair(scores, members))


def _group_counts(s: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, group = np.unique(-s, return_inverse=True)
    n_groups = int(group.max()) + 1
    return np.bincount(group[m], minlength=n_groups), np.bincount(group[~m], minlength=n_groups)


def _roc_points(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` from the tie-group counts: the points of :func:`roc_curve`, bit for
    bit, as sklearn divides the same integer cumulative counts (one sort instead of two)."""
    fps = np.concatenate([[0], np.cumsum(neg)])
    tps = np.concatenate([[0], np.cumsum(pos)])
    return fps / fps[-1], tps / tps[-1]


@dataclass(frozen=True)
class LevelTies:
    """How the tie groups of one target's scores meet one FPR level.

    ``achieved_fpr``: the largest ROC FPR <= level, where TPR@FPR is read.
    ``next_fpr``: the smallest ROC FPR > level (None if none), reached by accepting the
    tie group that straddles the level; ``group_share``: that group's share of all
    scores (0 if none). ``reachable``: False when the tie group forces the achieved FPR
    below ``REACH_FRACTION`` of ``floor(level · n) / n``, the FPR a tie-free attack
    attains on ``n`` non-members (see :func:`level_ties`).
    """

    reachable: bool
    achieved_fpr: float
    next_fpr: float | None
    group_share: float


def level_ties(pos: np.ndarray, neg: np.ndarray, level: float) -> LevelTies:
    """Whether ties let a threshold come near FPR ``level``, from :func:`tie_groups` counts.

    Without ties every FPR ``k / n`` (``n`` non-members) is a ROC point, so the best
    threshold at or below the level attains ``k* / n`` with ``k* = floor(level · n)``.
    A tie group is accepted whole; if one straddles the level, the achieved FPR ``a / n``
    is the FPR before it. The level is *unreachable* iff ``a < k* / 2``: the reported
    TPR is then a TPR at an FPR under half the level's, more than 0.3 decades away on
    the log-FPR axis where low-FPR levels sit a decade apart. This holds in particular
    whenever ``a = 0 < k*``: a resolved level where the TPR is a TPR at FPR 0. It is
    independent of :func:`fpr_resolvable` (an unresolved level has ``k* = 0`` and is
    reachable). Counts are integers, so the comparison ``2 a < k*`` is exact.
    """
    n_neg = int(neg.sum())
    fps = np.concatenate([[0], np.cumsum(neg)])
    fpr = fps / n_neg
    j = int(np.searchsorted(fpr, level, side="right")) - 1  # last ROC point with fpr <= level
    k_star = int(np.searchsorted(np.arange(n_neg + 1) / n_neg, level, side="right")) - 1
    above = j + 1 < fpr.size
    return LevelTies(
        reachable=bool(int(fps[j]) >= REACH_FRACTION * k_star),
        achieved_fpr=float(fpr[j]),
        next_fpr=float(fpr[j + 1]) if above else None,
        group_share=float((pos[j] + neg[j]) / (pos.sum() + n_neg)) if above else 0.0,
    )


@dataclass(frozen=True)
class AttackMetrics:
    """Leakage metrics of one attack on one target; dicts are keyed by FPR level."""

    auc: float
    advantage: float
    tpr_at_fpr: dict[float, float]
    resolved: dict[float, bool]
    ties: dict[float, LevelTies]
    tie_share: float
    n_members: int
    n_nonmembers: int


def attack_metrics(scores: object, members: object, fpr_levels: object) -> AttackMetrics:
    """AUC, advantage and TPR at each FPR level, all from one ROC computation, with the
    tie guard of each level (:func:`level_ties`) and the largest tie group's share."""
    levels = [float(v) for v in _check_levels(fpr_levels)]
    s, m = _check_pair(scores, members)
    pos, neg = _group_counts(s, m)
    fpr, tpr = _roc_points(pos, neg)
    n_members = int(np.count_nonzero(m))
    n_nonmembers = m.size - n_members
    return AttackMetrics(
        auc=float(np.trapezoid(tpr, fpr)),  # sklearn.metrics.auc's rule (fpr increases)
        advantage=_advantage(fpr, tpr),
        tpr_at_fpr={v: _tpr_at(fpr, tpr, v) for v in levels},
        resolved={v: fpr_resolvable(n_nonmembers, v) for v in levels},
        ties={v: level_ties(pos, neg, v) for v in levels},
        tie_share=float(np.max(pos + neg) / m.size),
        n_members=n_members,
        n_nonmembers=n_nonmembers,
    )


def batch_metrics(
    scores: object,
    members: object,
    fpr_levels: object,
    counts: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """AUC, advantage and TPR@FPR of T targets at once, vectorised in numpy.

    ``scores`` and ``members`` have shape (T, N). Returns ``auc`` (T,), ``advantage``
    (T,) and ``tpr`` (T, L) with the same definitions (and values, up to rounding of
    the AUC) as :func:`attack_metrics` on each row.

    ``counts`` (B, N), if given, holds B resamples of the N sample positions as
    multiplicities (position i drawn ``counts[b, i]`` times), the same resample for
    every target row; then each output gains a leading axis B. Each row is sorted once
    and a resample only reweights it, which equals re-sorting the resampled arrays
    (:mod:`mialens.metrics.resampled`).
    """
    s, m = _check_rows(scores, members)
    levels = _check_levels(fpr_levels)
    if counts is None:
        one = resampled_metrics(s, m, levels, np.ones((1, s.shape[1]), dtype=np.uint8))
        return {key: value[0] for key, value in one.items()}
    w = np.asarray(counts)
    n_samples = s.shape[1]
    if w.ndim != 2 or w.shape[0] == 0 or w.shape[1] != n_samples:
        raise DataError(f"counts must have shape (n_resamples>0, {n_samples}); got {w.shape}.")
    if w.dtype.kind not in "iu" or (w < 0).any():
        raise DataError("counts must hold non-negative integer multiplicities.")
    n_pos = member_counts(w, m)
    n_neg = w.sum(axis=1, keepdims=True) - n_pos
    if (n_pos == 0).any() or (n_neg == 0).any():
        b, t = np.argwhere((n_pos == 0) | (n_neg == 0))[0]
        raise DataError(
            f"resample {b} leaves target row {t} without a member or a non-member; "
            "drop such resamples first."
        )
    return resampled_metrics(s, m, levels, w)


def mean_roc(scores: object, members: object, fpr_grid: object) -> np.ndarray:
    """Mean over targets of each target's TPR at every FPR of ``fpr_grid``.

    Step interpolation as in :func:`tpr_at_fpr` (largest TPR with FPR <= grid value),
    for averaged log-log ROC plots (Carlini et al. 2022, Fig. 1 style).
    """
    return batch_metrics(scores, members, fpr_grid)["tpr"].mean(axis=0)


def log_fpr_grid(n_nonmembers: int, points: int = 200) -> np.ndarray:
    """``points`` log-spaced FPRs from max(1 / n_nonmembers, 1e-5) to 1."""
    if n_nonmembers < 1 or points < 2:
        raise ConfigError(
            f"log_fpr_grid needs n_nonmembers >= 1 and points >= 2; got {n_nonmembers}, {points}."
        )
    return np.geomspace(max(1.0 / n_nonmembers, 1e-5), 1.0, points)
