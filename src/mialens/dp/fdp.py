"""One-run f-DP audit: correct guesses on canaries to a (1 - beta) lower bound on epsilon.

Mahloujifar, Melis & Chaudhuri 2024, *Auditing f-Differential Privacy in One Run*
(arXiv 2410.22235, ICML 2025). The game is that of Steinke, Nasr & Jagielski 2023: m
canaries, each included independently with probability 1/2 in one run; the auditor guesses
IN for the ``k_plus`` highest and OUT for the ``k_minus`` lowest scores (both fixed in
advance) and abstains on the rest, making ``guesses = k_plus + k_minus`` guesses of which
``correct`` are right. If the mechanism is f-DP for each canary, the paper's recursion on
the trade-off curve f (their procedures ``rh_with_cap`` / ``audit_rh_with_cap``: the
numerical bound for the guessing game with abstention) shows that ``correct`` or more right
guesses happen with probability below beta; observing them rejects f at level beta.

For a family of curves ordered by privacy (Gaussian DP by mu; (eps, delta)-DP by eps) the
largest rejected parameter is a (1 - beta) lower bound on the true one; a Gaussian mu is
reported as the epsilon it implies at ``delta`` (Dong, Roth & Su 2022, Corollary 2.13;
:func:`~mialens.dp.gaussian_dp.gdp_epsilon`).
Every numerical search returns the rejected end of its final bracket, so rounding never
raises the bound.

The f-DP bound is at least Steinke et al.'s with the Gaussian curve, not always with the
(eps, delta) curve: there it can be lower by up to ~0.013 (m = 1000), even at delta = 0,
where Steinke's p-value is the exact binomial tail of randomised response (which attains
it) while the recursion above is an upper bound on that tail, equal to it only when every
guess is right. The gap is the analysis's, not the search's (its bracket is 1e-15 wide)
nor the delta term's (it persists at delta = 0); tests/dp/test_coverage.py pins it. Taking
the larger of the two bounds would need a correction (two tests of one hypothesis).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.special import ndtr, ndtri

from mialens.dp.gaussian_dp import gdp_epsilon
from mialens.dp.one_run import guess
from mialens.dp.result import DPAuditResult, check_level
from mialens.dp.search import largest_where
from mialens.errors import ConfigError, DataError

Family = Literal["gaussian", "eps_delta"]
FAMILIES: tuple[str, ...] = ("gaussian", "eps_delta")
_TOLERANCE = 1e-15  # relative width of the final bracket: a few ulps


@dataclass(frozen=True)
class GaussianCurve:
    """mu-Gaussian DP: f(x) = Phi(Phi^-1(1 - x) - mu) (Dong, Roth & Su 2022, Def. 2.7)."""

    mu: float

    def __post_init__(self) -> None:
        if not np.isfinite(self.mu) or self.mu < 0:
            raise ConfigError(f"Gaussian DP needs a finite mu >= 0, got {self.mu}.")

    def __call__(self, x: Any) -> Any:
        """The type II error f(x) of the best test at type I error x in [0, 1]."""
        return ndtr(ndtri(1.0 - np.asarray(x, dtype=float)) - self.mu)

    def blow_up_inverse(self, y: float) -> float:
        """The least x with 1 - f(x) >= y: Phi(Phi^-1(y) - mu)."""
        return float(ndtr(ndtri(y) - self.mu))


@dataclass(frozen=True)
class EpsDeltaCurve:
    """(eps, delta)-DP: f(x) = max(0, 1 - delta - e^eps x, e^-eps (1 - delta - x))
    (Dong, Roth & Su 2022, Prop. 2.5)."""

    eps: float
    delta: float

    def __post_init__(self) -> None:
        if not np.isfinite(self.eps) or self.eps < 0:
            raise ConfigError(f"(eps, delta)-DP needs a finite eps >= 0, got {self.eps}.")
        if not 0 <= self.delta < 1:
            raise ConfigError(f"(eps, delta)-DP needs delta in [0, 1), got {self.delta}.")

    def __call__(self, x: Any) -> Any:
        """The type II error f(x) of the best test at type I error x in [0, 1]."""
        x = np.asarray(x, dtype=float)
        rest = 1.0 - self.delta
        return np.maximum.reduce(
            [np.zeros_like(x), rest - np.exp(self.eps) * x, np.exp(-self.eps) * (rest - x)]
        )

    def blow_up_inverse(self, y: float) -> float:
        """The least x with 1 - f(x) >= y: the largest inverse of the linear pieces of 1 - f."""
        if y >= 1.0:
            return 1.0 - self.delta
        top = 1.0 - self.delta - np.exp(min(self.eps, 700.0)) * (1.0 - y)
        return float(max(0.0, (y - self.delta) * np.exp(-self.eps), top))


Curve = GaussianCurve | EpsDeltaCurve


def _check_game(m: int, guesses: int, correct: int, beta: float) -> None:
    check_level("beta", beta)
    if m < 1:
        raise ConfigError(f"the audit needs at least one canary, got m = {m}.")
    if not 0 <= guesses <= m:
        raise ConfigError(f"guesses must lie in [0, m = {m}], got {guesses}.")
    if not 0 <= correct <= guesses:
        raise DataError(f"correct guesses must lie in [0, guesses = {guesses}], got {correct}.")


def rejects(curve: Curve, m: int, guesses: int, correct: int, beta: float) -> bool:
    """Whether ``correct`` right guesses out of ``guesses`` on ``m`` canaries reject f at
    level ``beta`` (Mahloujifar et al. 2024, ``audit_rh_with_cap``).

    Supposing Pr[at least ``correct`` right] >= beta, start from r = beta * correct / m and
    h = beta * (guesses - correct) / m and run ``rh_with_cap`` for i = correct - 1, ..., 0:
    h <- max(h, fbar^-1(r)) and r <- r + i / (guesses - i) * (h_new - h_old), with fbar^-1
    the curve's :meth:`blow_up_inverse`. The supposition is contradicted (f rejected) when
    r + h > guesses / m. Stopping once h stops moving changes nothing (then nothing moves
    again). Capping r at 1 keeps fbar^-1 in its domain and can only turn a rejection into
    an acceptance: r never decreases and guesses / m <= 1, so an uncapped r > 1 rejects.
    """
    _check_game(m, guesses, correct, beta)
    r = beta * correct / m
    h = beta * (guesses - correct) / m
    for i in range(correct - 1, -1, -1):
        h_new = max(h, curve.blow_up_inverse(r))
        if h_new == h:
            break
        r = min(1.0, r + i / (guesses - i) * (h_new - h))
        h = h_new
    return r + h > guesses / m


def max_plausible_correct(curve: Curve, m: int, guesses: int, beta: float) -> int:
    """The largest number of right guesses (out of ``guesses``) that f does not reject at
    level ``beta``: seeing more rejects f. Scanned down from ``guesses``, assuming nothing
    of monotonicity in the count."""
    # zero right guesses never reject: then r + h = beta * guesses / m < guesses / m
    candidates = range(guesses, -1, -1)
    return next(v for v in candidates if not rejects(curve, m, guesses, v, beta))


def _largest_rejected(
    make_curve: Callable[[float], Curve], m: int, guesses: int, correct: int, beta: float
) -> float:
    """The largest parameter p whose curve ``make_curve(p)`` is rejected (0 if none is).

    Assumes the rejected parameters form an interval [0, p*) (the family is ordered:
    a larger p gives a pointwise lower curve); tests/dp/test_fdp.py checks this on a grid.
    """

    def rejected(p: float) -> bool:
        return rejects(make_curve(p), m, guesses, correct, beta)

    return largest_where(rejected, tol=_TOLERANCE, relative=True, limit=1e3)


def _family_epsilon(
    family: str, m: int, guesses: int, correct: int, beta: float, delta: float
) -> float:
    if family == "gaussian":
        mu = _largest_rejected(GaussianCurve, m, guesses, correct, beta)
        return gdp_epsilon(mu, delta)
    return _largest_rejected(lambda eps: EpsDeltaCurve(eps, delta), m, guesses, correct, beta)


def epsilon_lower(
    m: int,
    guesses: int,
    correct: int,
    *,
    beta: float = 0.05,
    delta: float = 1e-5,
    family: Family = "gaussian",
) -> DPAuditResult:
    """The (1 - beta) lower bound on epsilon at ``delta`` from ``correct`` right guesses out
    of ``guesses`` on ``m`` canaries (Mahloujifar et al. 2024, with :func:`rejects`).

    ``family="gaussian"``: the largest rejected Gaussian-DP mu, as epsilon at ``delta``
    (:func:`~mialens.dp.gaussian_dp.gdp_epsilon`, from below); valid for mechanisms that
    are mu-GDP (the Gaussian mechanism). ``family="eps_delta"``: the largest eps whose
    (eps, delta) curve is rejected, valid for any (eps, delta)-DP mechanism; here ``delta``
    may be 0. The method is reported as ``one_run_fdp_<family>``.
    """
    if family not in FAMILIES:
        raise ConfigError(f"unknown curve family {family!r}; known: {', '.join(FAMILIES)}.")
    check_level("delta", delta, zero_allowed=family == "eps_delta")
    _check_game(m, guesses, correct, beta)
    return DPAuditResult(
        method=f"one_run_fdp_{family}",
        epsilon_lower=_family_epsilon(family, m, guesses, correct, beta, delta),
        beta=beta,
        delta=delta,
        m=m,
        guesses=guesses,
        correct=correct,
        ceiling=_family_epsilon(family, m, guesses, guesses, beta, delta),
    )


def audit_one_run_fdp(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    k_plus: int,
    k_minus: int,
    delta: float,
    beta: float = 0.05,
    family: Family = "gaussian",
    seed: int = 0,
) -> DPAuditResult:
    """The one-run f-DP audit of canary ``scores`` with their inclusion bits: the guesses of
    :func:`mialens.dp.one_run.guess` (``k_plus``/``k_minus`` fixed in advance), then
    :func:`epsilon_lower`."""
    guesses, correct = guess(scores, included, k_plus=k_plus, k_minus=k_minus, seed=seed)
    return epsilon_lower(len(scores), guesses, correct, beta=beta, delta=delta, family=family)
