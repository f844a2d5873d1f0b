"""Empirical lower bounds on the differential-privacy epsilon from attack results.

An (epsilon, delta)-DP training algorithm bounds every membership test (Kairouz et al.
2015; used for auditing by Jagielski et al. 2020, Sec. 3, and Nasr et al. 2021):
``FPR + e^eps * FNR >= 1 - delta`` and ``FNR + e^eps * FPR >= 1 - delta``. A threshold
test with observed error rates therefore certifies

    eps >= max( log((1 - delta - FPR) / FNR), log((1 - delta - FNR) / FPR) ),

and replacing FPR and FNR by their Clopper-Pearson upper confidence bounds makes the
statement hold with the chosen confidence. The threshold is picked on other models'
scores (never on the audited target's), so that the bound is not overfitted.

Caveats: the Clopper-Pearson step treats the ``N`` samples of one target as independent
trials, whereas they share one training run (Jagielski et al. and Nasr et al. train one
model per trial; a one-run audit needs the analysis of Steinke, Nasr & Jagielski 2023),
and the other targets' scores may have used the audited model as a reference model. The
bound is therefore a diagnostic lower estimate, not a certificate.
"""

from __future__ import annotations

import numpy as np

from mialens.dp.many_run import clopper_pearson_upper, epsilon_from_rates
from mialens.errors import DataError


def _error_counts(scores: np.ndarray, members: np.ndarray, thresholds: np.ndarray):
    """False positives and false negatives of the tests ``score >= t`` for every t."""
    pos = np.sort(scores[members])
    neg = np.sort(scores[~members])
    fp = neg.size - np.searchsorted(neg, thresholds, side="left")
    fn = np.searchsorted(pos, thresholds, side="left")
    return fp, fn, neg.size, pos.size


def empirical_epsilon(
    scores: np.ndarray, members: np.ndarray, delta: float, confidence: float = 0.95
) -> dict[str, object]:
    """Epsilon lower bounds of ``T`` targets from their attack scores ``(T, N)``.

    For target ``t`` the threshold maximising the bound on the other targets' pooled
    scores is applied to ``t``'s scores; in both steps FPR and FNR enter through
    Clopper-Pearson upper bounds at ``confidence`` (split between the two rates), so
    that selection does not chase thresholds whose observed error count is zero.
    ``max`` is the largest per-target bound at a Bonferroni-corrected confidence, valid
    jointly for all ``T`` targets.
    """
    scores = np.asarray(scores, dtype=np.float64)
    members = np.asarray(members, dtype=bool)
    if scores.ndim != 2 or scores.shape != members.shape:
        raise DataError("scores and members must both have shape (targets, samples)")
    t_count = scores.shape[0]
    if t_count < 2:
        raise DataError("an empirical epsilon needs at least two targets (one picks the threshold)")
    if not (0 < delta < 1 and 0 < confidence < 1):
        raise DataError("delta and confidence must lie strictly between 0 and 1")
    per_target, joint, thresholds = [], [], []
    alpha = 1 - confidence
    for t in range(t_count):
        others = np.arange(t_count) != t
        pool_s, pool_m = scores[others].ravel(), members[others].ravel()
        cand = np.unique(pool_s)
        fp, fn, n_neg, n_pos = _error_counts(pool_s, pool_m, cand)
        fpr_ub = clopper_pearson_upper(fp, n_neg, alpha / 2)
        fnr_ub = clopper_pearson_upper(fn, n_pos, alpha / 2)
        best = cand[int(np.argmax(epsilon_from_rates(fpr_ub, fnr_ub, delta)))]
        fp, fn, n_neg, n_pos = _error_counts(scores[t], members[t], np.array([best]))
        for level, store in ((alpha, per_target), (alpha / t_count, joint)):
            fpr_ub = clopper_pearson_upper(fp, n_neg, level / 2)
            fnr_ub = clopper_pearson_upper(fn, n_pos, level / 2)
            store.append(float(epsilon_from_rates(fpr_ub, fnr_ub, delta)[0]))
        thresholds.append(float(best))
    return {
        "per_target": per_target,
        "mean": float(np.mean(per_target)),
        "max": float(np.max(joint)),
        "thresholds": thresholds,
        "delta": delta,
        "confidence": confidence,
    }


def strongest_epsilon(
    scores: dict[str, np.ndarray], members: np.ndarray, delta: float, confidence: float = 0.95
) -> float:
    """The largest :func:`empirical_epsilon` ``max`` over several attacks' scores ``(T, N)``.

    Taking the maximum over ``A`` attacks is one more selection, so each attack's bound is
    computed at the Bonferroni-corrected confidence ``1 - (1 - confidence) / A``: the
    result then holds jointly over every attack and target with ``confidence``.
    """
    if not scores:
        raise DataError("no attack scores to bound epsilon with")
    level = 1 - (1 - confidence) / len(scores)
    return max(
        float(empirical_epsilon(s, members, delta=delta, confidence=level)["max"])
        for s in scores.values()
    )
