"""The many-run epsilon lower bound: Clopper-Pearson on a fixed threshold's error rates.

The construction of Jagielski, Ullman & Oprea 2020 ("Auditing Differentially Private
Machine Learning: How Private is Private SGD?", NeurIPS) and Nasr et al. 2021 ("Adversary
Instantiation: Lower Bounds for Differentially Private Machine Learning", IEEE S&P): train
many independent runs, each with the canary IN or OUT, score the canary in each, and call
IN every run scoring at or above a threshold fixed before the audited runs are seen. Any
test of an (eps, delta)-DP mechanism has (Kairouz, Oh & Viswanath 2015, Theorem 2.1)

    FPR + e^eps FNR >= 1 - delta   and   FNR + e^eps FPR >= 1 - delta,

so eps >= log((1 - delta - FPR) / FNR) and eps >= log((1 - delta - FNR) / FPR). With
one-sided Clopper-Pearson upper limits FPR_hi, FNR_hi, each at level beta / 2 (Bonferroni),
both rates lie below their limits with probability >= 1 - beta; on that event both
inequalities hold with the limits in place of the rates, so the larger right-hand side
(and 0) is a (1 - beta) lower bound. A threshold chosen on the audited runs voids it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import beta as beta_distribution

from mialens.dp.result import DPAuditResult, check_level
from mialens.errors import DataError

METHOD = "many_run_clopper_pearson"


def clopper_pearson_upper(errors: Any, trials: Any, level: float) -> np.ndarray:
    """One-sided (1 - ``level``) Clopper-Pearson upper limit of a binomial rate, elementwise:
    the (1 - ``level``) quantile of Beta(errors + 1, trials - errors), 1 when errors = trials."""
    errors = np.asarray(errors, dtype=np.float64)
    trials = np.asarray(trials, dtype=np.float64)
    upper = beta_distribution.ppf(1 - level, errors + 1, np.maximum(trials - errors, 1e-12))
    return np.where(errors >= trials, 1.0, upper)


def epsilon_from_rates(fpr: Any, fnr: Any, delta: float) -> np.ndarray:
    """max(0, log((1 - delta - FPR) / FNR), log((1 - delta - FNR) / FPR)), elementwise: the
    epsilon that error rates (or their upper limits) certify; inf for a perfect test."""
    fpr = np.asarray(fpr, dtype=np.float64)
    fnr = np.asarray(fnr, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(np.maximum(1 - delta - fpr, 0) / fnr)
        b = np.log(np.maximum(1 - delta - fnr, 0) / fpr)
    bound = np.fmax(np.where(np.isnan(a), -np.inf, a), np.where(np.isnan(b), -np.inf, b))
    return np.maximum(bound, 0.0)


def check_scores(name: str, scores: np.ndarray) -> np.ndarray:
    """``scores`` as a non-empty 1-D float array without NaN, else a DataError."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 1 or scores.size == 0:
        raise DataError(
            f"{name} must be a non-empty 1-D array (one score a run), got {scores.shape}."
        )
    if np.isnan(scores).any():
        raise DataError(f"{int(np.isnan(scores).sum())} of {name} are NaN.")
    return scores


def audit_many_runs(
    in_scores: np.ndarray,
    out_scores: np.ndarray,
    *,
    threshold: float,
    delta: float,
    beta: float = 0.05,
) -> DPAuditResult:
    """Lower bound from the canary's scores in independent runs with it IN and OUT.

    ``in_scores``/``out_scores``: one score a run (higher means IN). ``threshold``: fixed in
    advance or chosen on other runs' scores, never on these. Reports ``m`` = runs,
    ``guesses`` = runs, ``correct`` = runs classified right, and the ``ceiling`` (no errors).
    """
    beta = check_level("beta", beta)
    delta = check_level("delta", delta, zero_allowed=True)
    in_scores = check_scores("in_scores", in_scores)
    out_scores = check_scores("out_scores", out_scores)
    if math.isnan(threshold):
        raise DataError("threshold is NaN.")
    n_in, n_out = in_scores.size, out_scores.size
    false_negatives = int(np.sum(in_scores < threshold))
    false_positives = int(np.sum(out_scores >= threshold))
    fpr_hi = clopper_pearson_upper(false_positives, n_out, beta / 2)
    fnr_hi = clopper_pearson_upper(false_negatives, n_in, beta / 2)
    perfect = (clopper_pearson_upper(0, n_out, beta / 2), clopper_pearson_upper(0, n_in, beta / 2))
    return DPAuditResult(
        method=METHOD,
        epsilon_lower=float(epsilon_from_rates(fpr_hi, fnr_hi, delta)),
        beta=beta,
        delta=delta,
        m=n_in + n_out,
        guesses=n_in + n_out,
        correct=n_in + n_out - false_negatives - false_positives,
        ceiling=float(epsilon_from_rates(*perfect, delta)),
    )
