"""The one-run epsilon lower bound of Steinke, Nasr & Jagielski (NeurIPS 2023).

"Privacy Auditing with One (1) Training Run" (arXiv:2305.08846). ``m`` canaries are each
included independently with probability 1/2; from the trained model's scores the auditor
guesses IN for the ``k_plus`` highest and OUT for the ``k_minus`` lowest, abstaining on the
rest (their Algorithm 1). Their main theorem (Theorem 3, the (eps, delta) case): if the
training is (eps, delta)-DP, the number W of correct guesses among r guesses satisfies

    P[W >= v] <= f(v) + 2 m delta * max_{i = 1..m} (f(v - i) - f(v)) / i,
    f(v) = P[Binomial(r, e^eps / (1 + e^eps)) >= v],

for every v, so the right-hand side at the observed v is a p-value for "the training is
(eps, delta)-DP". With delta = 0 it is the binomial tail alone. ``k_plus`` and ``k_minus``
must be fixed before the scores are seen; choosing them from the scores voids the bound.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit
from scipy.stats import binom

from mialens.dp.result import DPAuditResult, check_level
from mialens.dp.search import largest_where
from mialens.errors import ConfigError, DataError

METHOD = "one_run_steinke2023"


def _check_counts(m: int, guesses: int, correct: int) -> None:
    if not 0 <= correct <= guesses <= m:
        raise DataError(
            f"need 0 <= correct <= guesses <= m, got correct={correct}, guesses={guesses}, m={m}."
        )


def _check_delta(m: int, delta: float) -> float:
    """delta in [0, 1) with 2 m delta <= 1, the range where the p-value grows with epsilon."""
    delta = check_level("delta", delta, zero_allowed=True)
    if 2 * m * delta > 1:
        raise ConfigError(
            f"2 * m * delta = {2 * m * delta:g} exceeds 1 (m={m} canaries, delta={delta:g}); "
            "the one-run bound needs delta <= 1 / (2 m): use fewer canaries or a smaller delta."
        )
    return delta


def p_value(m: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """The p-value of ``correct`` out of ``guesses`` under (``epsilon``, ``delta``)-DP.

    The right-hand side of Steinke et al.'s Theorem 3 (module docstring) at v = ``correct``,
    capped at 1. The max over i runs over 1..v: for i >= v, f(v - i) = 1, so the ratio only
    shrinks with i (the same range as the p-value routine printed in the paper).
    """
    _check_counts(m, guesses, correct)
    delta = _check_delta(m, delta)
    if epsilon < 0:
        raise ConfigError(f"epsilon must be >= 0, got {epsilon}.")
    if correct == 0:
        return 1.0
    q = expit(epsilon)
    tail = binom.sf(correct - 1, guesses, q)
    if delta == 0.0:
        return float(min(1.0, tail))
    below = np.cumsum(binom.pmf(np.arange(correct - 1, -1, -1), guesses, q))
    alpha = np.max(below / np.arange(1, correct + 1))  # (f(v - i) - f(v)) / i, i = 1..v
    return float(min(1.0, tail + 2 * m * delta * alpha))


def epsilon_lower(
    m: int, guesses: int, correct: int, *, beta: float, delta: float, tol: float = 1e-6
) -> float:
    """The largest epsilon rejected at level ``beta``: a (1 - ``beta``) lower bound.

    The p-value never decreases with epsilon when 2 m delta <= 1: with c = 2 m delta,
    d/dq [f(v) + c (f(v - i) - f(v)) / i] = r b(v - 1) (1 - c / i) + (c r / i) b(v - i - 1)
    >= 0, b the Binomial(r - 1, q) pmf, and q = e^eps / (1 + e^eps) grows with eps. So the
    rejected epsilons form an interval [0, eps*); bisection keeps p(low) < ``beta`` <= p(high)
    and returns ``low``, within ``tol`` below eps*, never above it. 0 when nothing is rejected.
    """
    beta = check_level("beta", beta)
    return largest_where(lambda eps: p_value(m, guesses, correct, eps, delta) < beta, tol=tol)


def ceiling(m: int, guesses: int, *, beta: float, delta: float) -> float:
    """The largest epsilon that ``guesses`` guesses, all correct, certify at ``beta``, ``delta``."""
    return epsilon_lower(m, guesses, guesses, beta=beta, delta=delta)


def guess(
    scores: np.ndarray, included: np.ndarray, *, k_plus: int, k_minus: int, seed: int = 0
) -> tuple[int, int]:
    """(guesses, correct): IN for the ``k_plus`` highest scores, OUT for the ``k_minus`` lowest.

    Ties are broken by a permutation drawn from ``seed`` alone, so the guesses depend on the
    scores and never on the inclusion bits (nor on the canaries' order).
    """
    scores = np.asarray(scores, dtype=float)
    included = np.asarray(included)
    if scores.ndim != 1 or included.shape != scores.shape:
        raise DataError(
            f"scores and included must be 1-D of one length, got {scores.shape}, {included.shape}."
        )
    if included.dtype != bool:
        raise DataError(
            f"included must be boolean (one inclusion bit a canary), got {included.dtype}."
        )
    if np.isnan(scores).any():
        raise DataError(f"{int(np.isnan(scores).sum())} canary scores are NaN.")
    m = scores.size
    if min(k_plus, k_minus) < 0 or k_plus + k_minus > m or k_plus + k_minus == 0:
        raise ConfigError(
            f"need k_plus, k_minus >= 0 and 1 <= k_plus + k_minus <= m, got "
            f"k_plus={k_plus}, k_minus={k_minus}, m={m}."
        )
    tie_break = np.random.default_rng(seed).permutation(m)
    order = np.lexsort((tie_break, scores))  # ascending score
    top, bottom = order[m - k_plus :], order[:k_minus]
    return k_plus + k_minus, int(included[top].sum() + (~included[bottom]).sum())


def audit_one_run(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    k_plus: int,
    k_minus: int,
    delta: float,
    beta: float = 0.05,
    seed: int = 0,
) -> DPAuditResult:
    """Steinke et al.'s one-run audit: guess with fixed ``k_plus``/``k_minus``, then bound.

    ``scores``: higher means more likely included; ``included``: each canary's inclusion bit,
    drawn independently with probability 1/2. ``beta`` = 0.05 is the paper's 95% confidence.
    """
    check_level("beta", beta)
    _check_delta(len(scores), delta)
    guesses, correct = guess(scores, included, k_plus=k_plus, k_minus=k_minus, seed=seed)
    m = len(scores)
    return DPAuditResult(
        method=METHOD,
        epsilon_lower=epsilon_lower(m, guesses, correct, beta=beta, delta=delta),
        beta=beta,
        delta=delta,
        m=m,
        guesses=guesses,
        correct=correct,
        ceiling=ceiling(m, guesses, beta=beta, delta=delta),
    )
