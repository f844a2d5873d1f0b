"""The Gaussian-DP epsilon ESTIMATE (not a bound) of Nasr et al. 2023.

Nasr, Hayes, Steinke, Balle, Tramer, Jagielski, Carlini & Terzis, "Tight Auditing of
Differentially Private Machine Learning" (USENIX Security 2023, arXiv:2302.07956) read a
white-box, every-step audit of DP-SGD as mu-GDP and convert mu to (eps, delta). A mu-GDP
mechanism's trade-off curve is G_mu(alpha) = Phi(Phi^-1(1 - alpha) - mu) (Dong, Roth & Su
2022, "Gaussian Differential Privacy", JRSS-B, Eq. 6), so a test with rates (FPR, TPR) on it
has mu = Phi^-1(TPR) - Phi^-1(FPR); mu-GDP is (eps, delta(eps))-DP for every eps >= 0 with

    delta(eps) = Phi(-eps / mu + mu / 2) - e^eps Phi(-eps / mu - mu / 2)

(their Corollary 2.13). Two estimates, both reported as ``kind="estimate"``, never as a
bound (they carry no confidence limits):

- :func:`estimate_gaussian_dp`: the observed rates of a threshold fixed in advance plugged
  into the first relation;
- :func:`estimate_gdp_from_steps`: the white-box, every-step audit of Nasr et al. 2023
  (Sec. 4, the "two runs" audit): each step's observation of the canary (the update's
  alignment with it) is N(mu_in, s^2) with it and N(mu_out, s^2) without, whose trade-off
  curve is exactly G_mu_step with mu_step = (mu_in - mu_out) / s; T such steps compose to
  sqrt(T) mu_step-GDP (Dong, Roth & Su 2022, Corollary 3.3: mu_t-GDP steps compose to
  sqrt(sum mu_t^2)-GDP). The T steps of one run are T samples of the per-step law, so one
  run with the canary and one without suffice. The means and the pooled standard deviation
  are the fitted Gaussians'. It holds where the steps are Gaussian: full-batch DP-SGD
  (q = 1). With Poisson sampling (q < 1) a step is a Gaussian mixture, not Gaussian DP,
  and the paper defines no such estimate; none is offered here.
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
STEPS_METHOD = "gaussian_dp_steps_nasr2023"


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


def estimate_gdp_from_steps(
    in_steps: np.ndarray, out_steps: np.ndarray, *, steps: int, delta: float
) -> DPAuditResult:
    """Gaussian-DP epsilon estimate of Nasr et al. 2023 from per-step observations.

    ``in_steps`` / ``out_steps``: the canary's per-step alignments with it IN and OUT (any
    shape, each entry one step of one run, all from the same per-step law); ``steps``: the
    T steps of the audited training. mu_step = (mean_in - mean_out) / s, s the pooled
    standard deviation (ddof = 1 in each group), mu = sqrt(T) mu_step, epsilon =
    :func:`gdp_epsilon` (mu, ``delta``) (module docstring). ``m`` and ``guesses`` count the
    observations; ``correct`` those on the right side of the midpoint of the two means.
    """
    delta = check_level("delta", delta)
    in_steps = check_scores("in_steps", np.ravel(in_steps))
    out_steps = check_scores("out_steps", np.ravel(out_steps))
    if int(steps) != steps or steps < 1:
        raise ConfigError(f"steps must be a positive integer, got {steps}.")
    if min(in_steps.size, out_steps.size) < 2:
        raise DataError("the Gaussian fit needs at least two observations IN and two OUT.")
    sums = (in_steps.size - 1) * in_steps.var(ddof=1) + (out_steps.size - 1) * out_steps.var(ddof=1)
    pooled = math.sqrt(sums / (in_steps.size + out_steps.size - 2))
    if pooled == 0.0:
        raise DataError("the observations have no spread: the Gaussian fit is degenerate.")
    gap = float(in_steps.mean() - out_steps.mean())
    mu = math.sqrt(steps) * gap / pooled
    middle = float(in_steps.mean() + out_steps.mean()) / 2
    m = in_steps.size + out_steps.size
    return DPAuditResult(
        method=STEPS_METHOD,
        epsilon_lower=gdp_epsilon(mu, delta),
        beta=None,
        delta=delta,
        m=m,
        guesses=m,
        correct=int(np.sum(in_steps >= middle) + np.sum(out_steps < middle)),
        ceiling=None,
        kind="estimate",
    )
