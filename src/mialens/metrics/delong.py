"""DeLong's placement values of the AUC (DeLong, DeLong & Clarke-Pearson 1988)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def placements(positive: np.ndarray, negative: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The AUC and each score's placement value.

    AUC = P(positive score > negative score), ties counting 1/2 (the Mann-Whitney U
    statistic divided by ``m n``). ``v10[i]`` is the share of negatives below positive
    ``i`` and ``v01[j]`` the share of positives above negative ``j`` (ties 1/2), so both
    average to the AUC and DeLong's variance of the AUC is
    ``var(v10) / m + var(v01) / n`` (DeLong et al. 1988, Biometrics 44:837-845).
    """
    a = np.asarray(positive, dtype=np.float64)
    b = np.asarray(negative, dtype=np.float64)
    m, n = a.size, b.size
    ranks = stats.rankdata(np.concatenate([a, b]))
    ra, rb = ranks[:m], ranks[m:]
    auc = (ra.sum() - m * (m + 1) / 2) / (m * n)
    v10 = (ra - stats.rankdata(a)) / n
    v01 = 1 - (rb - stats.rankdata(b)) / m
    return float(auc), v10, v01
