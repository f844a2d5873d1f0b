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
reported as the epsilon it implies at ``delta`` (Dong, Roth & Su 2022, Corollary 2.13).
Every numerical search returns the rejected end of its final bracket, so rounding never
raises the bound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy.special import log_ndtr, ndtr, ndtri

from mialens.errors import ConfigError, DataError

Family = Literal["gaussian", "eps_delta"]
FAMILIES: tuple[str, ...] = ("gaussian", "eps_delta")
_BISECTIONS = 60


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
    if not 0 < beta < 1:
        raise ConfigError(f"beta (the significance level) must lie in (0, 1), got {beta}.")
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


def _largest_true(predicate: Callable[[float], bool], low: float, high: float) -> float:
    """Bisect [low, high] with predicate(low) true, predicate(high) false; the true end."""
    for _ in range(_BISECTIONS):
        middle = 0.5 * (low + high)
        if predicate(middle):
            low = middle
        else:
            high = middle
    return low


def _largest_rejected(
    make_curve: Callable[[float], Curve], m: int, guesses: int, correct: int, beta: float
) -> float:
    """The largest parameter p whose curve ``make_curve(p)`` is rejected (0 if none is).

    Assumes the rejected parameters form an interval [0, p*) (the family is ordered:
    a larger p gives a pointwise lower curve); tests/dp/test_fdp.py checks this on a grid.
    """

    def rejected(p: float) -> bool:
        return rejects(make_curve(p), m, guesses, correct, beta)

    if not rejected(0.0):
        return 0.0
    high = 1.0
    while rejected(high):
        high *= 2.0
        if high > 1e3:
            raise DataError("the f-DP audit rejected every privacy parameter up to 1000.")
    return _largest_true(rejected, 0.0, high)


def gaussian_delta(eps: float, mu: float) -> float:
    """delta(eps) of mu-GDP: Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)
    (Dong, Roth & Su 2022, Corollary 2.13)."""
    if mu <= 0:
        return 0.0
    tail = np.exp(eps + log_ndtr(-eps / mu - mu / 2))
    return float(ndtr(-eps / mu + mu / 2) - tail)


def gaussian_epsilon(mu: float, delta: float) -> float:
    """The epsilon at which mu-GDP holds with ``delta`` (inverse of :func:`gaussian_delta`
    in eps, which is decreasing); the lower end of the final bisection bracket."""
    if not 0 < delta < 1:
        raise ConfigError(f"delta must lie in (0, 1), got {delta}.")

    def above(eps: float) -> bool:
        return gaussian_delta(eps, mu) > delta

    if not above(0.0):
        return 0.0
    high = 1.0
    while above(high):
        high *= 2.0
    return _largest_true(above, 0.0, high)


@dataclass(frozen=True)
class FdpAuditResult:
    """A one-run f-DP audit: ``epsilon_lower`` holds with probability >= 1 - ``beta``.

    ``ceiling`` is what ``guesses`` all-correct guesses would certify, the most this
    setting (m, guesses, beta, delta, family) can ever show.
    """

    epsilon_lower: float
    beta: float
    delta: float
    m: int
    guesses: int
    correct: int
    ceiling: float
    curve_family: str
    method: str = "one_run_fdp"
    kind: str = "bound"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _family_epsilon(
    family: str, m: int, guesses: int, correct: int, beta: float, delta: float
) -> float:
    if family == "gaussian":
        mu = _largest_rejected(GaussianCurve, m, guesses, correct, beta)
        return gaussian_epsilon(mu, delta)
    return _largest_rejected(lambda eps: EpsDeltaCurve(eps, delta), m, guesses, correct, beta)


def epsilon_lower(
    m: int,
    guesses: int,
    correct: int,
    *,
    beta: float = 0.05,
    delta: float = 1e-5,
    family: Family = "gaussian",
) -> FdpAuditResult:
    """The (1 - beta) lower bound on epsilon at ``delta`` from ``correct`` right guesses out
    of ``guesses`` on ``m`` canaries (Mahloujifar et al. 2024, with :func:`rejects`).

    ``family="gaussian"``: the largest rejected Gaussian-DP mu, as epsilon at ``delta``
    (:func:`gaussian_epsilon`); valid for mechanisms that are mu-GDP (the Gaussian
    mechanism). ``family="eps_delta"``: the largest eps whose (eps, delta) curve is
    rejected, valid for any (eps, delta)-DP mechanism; here ``delta`` may be 0.
    """
    if family not in FAMILIES:
        raise ConfigError(f"unknown curve family {family!r}; known: {', '.join(FAMILIES)}.")
    if family == "eps_delta" and not 0 <= delta < 1:
        raise ConfigError(f"delta must lie in [0, 1) for family 'eps_delta', got {delta}.")
    if family == "gaussian" and not 0 < delta < 1:
        raise ConfigError(f"delta must lie in (0, 1) for family 'gaussian', got {delta}.")
    _check_game(m, guesses, correct, beta)
    return FdpAuditResult(
        epsilon_lower=_family_epsilon(family, m, guesses, correct, beta, delta),
        beta=beta,
        delta=delta,
        m=m,
        guesses=guesses,
        correct=correct,
        ceiling=_family_epsilon(family, m, guesses, guesses, beta, delta),
        curve_family=family,
    )


def count_correct_guesses(scores: Any, included: Any, k_plus: int, k_minus: int) -> tuple[int, int]:
    """(guesses, correct) of the one-run game: IN for the ``k_plus`` highest scores, OUT
    for the ``k_minus`` lowest (Steinke et al. 2023, Algorithm 1); ties are broken by
    canary order (a stable sort), which must not depend on the inclusion bits."""
    scores = np.asarray(scores, dtype=float)
    included = np.asarray(included)
    if scores.ndim != 1 or included.shape != scores.shape:
        raise DataError(
            f"scores and included must be 1-d of one length, got {scores.shape} and "
            f"{included.shape}."
        )
    if not np.all(np.isfinite(scores)):
        raise DataError("canary scores contain NaN or inf.")
    if not np.isin(included, (0, 1)).all():
        raise DataError("included must hold 0/1 (or False/True) inclusion bits.")
    if k_plus < 0 or k_minus < 0 or k_plus + k_minus > scores.size:
        raise ConfigError(
            f"need k_plus, k_minus >= 0 and k_plus + k_minus <= m = {scores.size}, got "
            f"k_plus = {k_plus}, k_minus = {k_minus}."
        )
    order = np.argsort(scores, kind="stable")
    right_out = int(np.sum(included[order[:k_minus]] == 0))
    right_in = int(np.sum(included[order[scores.size - k_plus :]] == 1))
    return k_plus + k_minus, right_in + right_out
