"""The Gaussian-DP epsilon ESTIMATE (not a bound) of Nasr et al. 2023.

Nasr, Hayes, Steinke, Balle, Tramer, Jagielski, Carlini & Terzis, "Tight Auditing of
Differentially Private Machine Learning" (USENIX Security 2023, arXiv:2302.07956) read a
white-box, every-step audit of DP-SGD as mu-GDP and convert mu to (eps, delta). A mu-GDP
mechanism's trade-off curve is G_mu(alpha) = Phi(Phi^-1(1 - alpha) - mu) (Dong, Roth & Su
2022, "Gaussian Differential Privacy", JRSS-B, Eq. 6), so a test with rates (FPR, TPR) on it
has mu = Phi^-1(TPR) - Phi^-1(FPR); mu-GDP is (eps, delta(eps))-DP for every eps >= 0 with

    delta(eps) = Phi(-eps / mu + mu / 2) - e^eps Phi(-eps / mu - mu / 2)

(their Corollary 2.13). The estimate plugs the observed rates of a threshold fixed in
advance into the first relation and inverts the second at the given delta. Its rates carry
no confidence limits, so it is reported as ``kind="estimate"``, never as a bound.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from mialens.dp.many_run import check_scores
from mialens.dp.result import DPAuditResult, check_level
from mialens.dp.search import largest_where
from mialens.errors import ConfigError, DataError

METHOD = "gaussian_dp_nasr2023"


def gdp_delta(epsilon: float, mu: float) -> float:
    """delta(eps) of mu-GDP (Dong, Roth & Su 2022, Corollary 2.13), in logs for stability."""
    if mu <= 0:
        raise ConfigError(f"mu must be > 0, got {mu}.")
    log_first = norm.logcdf(-epsilon / mu + mu / 2)
    log_second = epsilon + norm.logcdf(-epsilon / mu - mu / 2)
    return float(np.exp(log_first) * -np.expm1(log_second - log_first))


def gdp_epsilon(mu: float, delta: float) -> float:
    """The smallest eps >= 0 with delta(eps) <= ``delta`` for mu-GDP (0 when mu <= 0), from
    below: the lower end of a bisection bracket of width < 1e-12, so that a lower bound on
    mu converted here stays a lower bound on epsilon.

    delta(eps) falls strictly with eps (its derivative is -e^eps Phi(-eps/mu - mu/2)), so
    the root is unique.
    """
    delta = check_level("delta", delta)
    if mu <= 0:
        return 0.0
    return largest_where(lambda eps: gdp_delta(eps, mu) > delta, tol=1e-12, relative=True)


def mu_from_rates(tpr: float, fpr: float) -> float:
    """mu = Phi^-1(TPR) - Phi^-1(FPR) of the mu-GDP curve through (FPR, TPR)."""
    for name, rate in (("TPR", tpr), ("FPR", fpr)):
        if not 0.0 < rate < 1.0:
            raise DataError(
                f"the observed {name} is {rate}: at 0 or 1 the Gaussian-DP estimate is "
                "infinite; use more canaries or runs, or another threshold fixed in advance."
            )
    return float(norm.ppf(tpr) - norm.ppf(fpr))


def estimate_gaussian_dp(
    in_scores: np.ndarray, out_scores: np.ndarray, *, threshold: float, delta: float
) -> DPAuditResult:
    """Gaussian-DP epsilon estimate from IN and OUT canary scores at a fixed ``threshold``.

    Scores at or above ``threshold`` are called IN. ``m`` = scores, ``guesses`` = scores,
    ``correct`` = scores classified right; ``beta`` and ``ceiling`` are None (no bound).
    """
    delta = check_level("delta", delta)
    in_scores = check_scores("in_scores", in_scores)
    out_scores = check_scores("out_scores", out_scores)
    if math.isnan(threshold):
        raise DataError("threshold is NaN.")
    true_positives = int(np.sum(in_scores >= threshold))
    false_positives = int(np.sum(out_scores >= threshold))
    mu = mu_from_rates(true_positives / in_scores.size, false_positives / out_scores.size)
    m = in_scores.size + out_scores.size
    return DPAuditResult(
        method=METHOD,
        epsilon_lower=gdp_epsilon(mu, delta),
        beta=None,
        delta=delta,
        m=m,
        guesses=m,
        correct=true_positives + out_scores.size - false_positives,
        ceiling=None,
        kind="estimate",
    )
