"""Choosing the guesses of a one-run audit (k+, k-, the score) without voiding its bound.

The one-run bounds (:mod:`mialens.dp.one_run`, Steinke, Nasr & Jagielski 2023, Theorem 3;
:mod:`mialens.dp.fdp`, Mahloujifar, Melis & Chaudhuri 2024) hold for guesses fixed before the
audited canaries' inclusion bits are seen. Taking the best of several (k+, k-) or scores
after looking at how many guesses came out right (as ML Privacy Meter's DP audit does) is a
search over tests whose maximum is not a (1 - beta) bound. Three rules keep it one:

* ``fixed``: k+, k- and the score given in advance (:func:`fixed`);
* ``bonferroni``: every (k+, k-) of a small grid with every score, each bound at level
  beta / G for G = grid size x scores; by the union bound all G hold at once with
  probability >= 1 - beta, so their maximum is a (1 - beta) lower bound (:func:`bonferroni`);
* ``split``: a seeded half of the canaries chooses, the other half is audited
  (:func:`split`).

Why ``split`` is valid: Steinke et al.'s guesses may be any function of the mechanism's
output (their Algorithm 1 hands the whole output to the auditor) as long as each audited
canary's bit is an independent fair coin given everything else the guesser uses. The
selection canaries' bits are drawn independently of the audited ones', so conditioned on
them the training is still DP in each audited canary with independent fair bits, and a
choice computed from the output and the selection canaries' bits is a fixed function of
what the theorem allows; the bound holds conditionally, hence unconditionally, with m the
number of audited canaries (the 2 m delta term counts only those).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mialens.dp import fdp, one_run
from mialens.dp.many_run import clopper_pearson_upper, epsilon_from_rates
from mialens.dp.one_run import guess
from mialens.dp.result import DPAuditResult, check_level
from mialens.errors import ConfigError
from mialens.seeding import rng

# (m, guesses, correct, beta) -> the method's bound at level beta
Bound = Callable[[int, int, int, float], DPAuditResult]
# (k+ / m, k- / m): guess IN for the top share, OUT for the bottom share
Shares = tuple[float, float]

# guess shares tried by the bonferroni and split rules unless configured: k+ = k- from 1%
# to all of the canaries (Steinke et al. 2023, Sec. 7, vary the number of guesses likewise)
DEFAULT_GRID: tuple[Shares, ...] = (
    (0.005, 0.005), (0.01, 0.01), (0.025, 0.025), (0.05, 0.05), (0.1, 0.1), (0.25, 0.25),
    (0.5, 0.5),
)  # fmt: skip


@dataclass(frozen=True)
class Selection:
    """A bound with the choice behind it: the ``score`` used, ``k_plus`` and ``k_minus`` on
    the audited canaries, and ``record``, the rule and its correction for the output."""

    result: DPAuditResult
    score: str
    k_plus: int
    k_minus: int
    record: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        choice = {"score": self.score, "k_plus": self.k_plus, "k_minus": self.k_minus}
        return {**self.result.to_json(), **choice, "selection": self.record}


def steinke_bound(delta: float) -> Bound:
    """Steinke et al.'s one-run bound (Theorem 3) at ``delta``, from counts."""

    def bound(m: int, guesses: int, correct: int, beta: float) -> DPAuditResult:
        return DPAuditResult(
            method=one_run.METHOD,
            epsilon_lower=one_run.epsilon_lower(m, guesses, correct, beta=beta, delta=delta),
            beta=beta,
            delta=delta,
            m=m,
            guesses=guesses,
            correct=correct,
            ceiling=one_run.ceiling(m, guesses, beta=beta, delta=delta),
        )

    return bound


def fdp_bound(family: fdp.Family, delta: float) -> Bound:
    """Mahloujifar et al.'s one-run f-DP bound for the curve ``family`` at ``delta``."""

    def bound(m: int, guesses: int, correct: int, beta: float) -> DPAuditResult:
        return fdp.epsilon_lower(m, guesses, correct, beta=beta, delta=delta, family=family)

    return bound


def counts_of(shares: Shares, m: int) -> tuple[int, int]:
    """(k+, k-) for ``m`` canaries from their shares: rounded, at most m together, and at
    least one guess (on the larger share) when both round to zero."""
    k_plus = min(round(shares[0] * m), m)
    k_minus = min(round(shares[1] * m), m - k_plus)
    if k_plus + k_minus == 0:
        return (1, 0) if shares[0] >= shares[1] else (0, 1)
    return k_plus, k_minus


def check_grid(grid: Sequence[Shares]) -> list[Shares]:
    """``grid`` as a list of share pairs in [0, 1] summing to (0, 1], else a ConfigError."""
    pairs = [(float(a), float(b)) for a, b in grid]
    if not pairs:
        raise ConfigError("the selection grid is empty: list at least one [k+ share, k- share].")
    for a, b in pairs:
        if min(a, b) < 0 or not 0 < a + b <= 1:
            raise ConfigError(
                f"grid entry [{a:g}, {b:g}]: shares of guesses must be >= 0 and sum to (0, 1]."
            )
    return pairs


def _audit(
    scores: np.ndarray,
    included: np.ndarray,
    k: tuple[int, int],
    bound: Bound,
    beta: float,
    seed: int,
) -> DPAuditResult:
    guesses, correct = guess(scores, included, k_plus=k[0], k_minus=k[1], seed=seed)
    return bound(len(scores), guesses, correct, beta)


def fixed(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    score: str,
    k_plus: int,
    k_minus: int,
    bound: Bound,
    beta: float,
    seed: int = 0,
) -> Selection:
    """The bound of guesses fixed in advance: IN for the ``k_plus`` highest, OUT for the
    ``k_minus`` lowest ``scores`` (the score named ``score``)."""
    result = _audit(scores, included, (k_plus, k_minus), bound, check_level("beta", beta), seed)
    return Selection(result, score, k_plus, k_minus, {"rule": "fixed"})


def bonferroni(
    scores: Mapping[str, np.ndarray],
    included: np.ndarray,
    *,
    grid: Sequence[Shares] = DEFAULT_GRID,
    bound: Bound,
    beta: float,
    seed: int = 0,
) -> Selection:
    """The largest bound over every score and (k+, k-) of ``grid``, each at beta / G.

    G = len(grid) x len(scores) tests; all G bounds hold together with probability at least
    1 - beta (union bound), so the largest is a (1 - beta) lower bound. The reported ceiling
    is the largest any of the G tests could certify with perfect guesses. Ties keep the
    first score and grid entry.
    """
    beta = check_level("beta", beta)
    pairs = check_grid(grid)
    size = len(pairs) * len(scores)
    best: Selection | None = None
    top_ceiling = 0.0
    for name, values in scores.items():
        for shares in pairs:
            k = counts_of(shares, len(values))
            result = _audit(values, included, k, bound, beta / size, seed)
            top_ceiling = max(top_ceiling, result.ceiling or 0.0)
            if best is None or result.epsilon_lower > best.result.epsilon_lower:
                best = Selection(result, name, *k, {})
    record = {
        "rule": "bonferroni",
        "grid": [list(p) for p in pairs],
        "scores": list(scores),
        "tests": size,
        "beta_per_test": beta / size,
    }
    result = replace(best.result, beta=beta, ceiling=top_ceiling)
    return replace(best, result=result, record=record)


def halves(m: int, seed: int, share: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(selection, audited) canary positions: a seeded permutation of ``m`` cut at ``share``
    (each half sorted); both halves are non-empty."""
    if m < 2:
        raise ConfigError(f"the split rule needs at least 2 canaries, got {m}.")
    order = rng(seed, "dp-selection-split").permutation(m)
    cut = min(max(round(share * m), 1), m - 1)
    return np.sort(order[:cut]), np.sort(order[cut:])


def split(
    scores: Mapping[str, np.ndarray],
    included: np.ndarray,
    *,
    grid: Sequence[Shares] = DEFAULT_GRID,
    bound: Bound,
    beta: float,
    seed: int = 0,
    share: float = 0.5,
) -> Selection:
    """Choose the score and (k+, k-) shares on a seeded ``share`` of the canaries (using
    their bits and scores: the largest bound there at ``beta``), then audit the others with
    those shares; m, guesses and ceiling are the audited half's (module docstring)."""
    beta = check_level("beta", beta)
    pairs = check_grid(grid)
    included = np.asarray(included)
    chooser, audited = halves(len(included), seed, share)
    best, best_eps = None, -1.0
    for name, values in scores.items():
        values = np.asarray(values, dtype=float)
        for shares in pairs:
            k = counts_of(shares, chooser.size)
            result = _audit(values[chooser], included[chooser], k, bound, beta, seed)
            if result.epsilon_lower > best_eps:
                best, best_eps = (name, shares), result.epsilon_lower
    name, shares = best
    k = counts_of(shares, audited.size)
    values = np.asarray(scores[name], dtype=float)
    result = _audit(values[audited], included[audited], k, bound, beta, seed)
    record = {
        "rule": "split",
        "grid": [list(p) for p in pairs],
        "scores": list(scores),
        "selection_canaries": int(chooser.size),
        "audited_canaries": int(audited.size),
        "chosen_shares": list(shares),
        "selection_epsilon": best_eps,
    }
    return Selection(result, name, *k, record)


def choose_threshold(
    scores: Mapping[str, np.ndarray], included: np.ndarray, *, delta: float, beta: float
) -> tuple[str, float]:
    """(score, threshold) of the test ``score >= threshold`` with the largest many-run bound
    (:mod:`mialens.dp.many_run`: Clopper-Pearson limits at beta / 2 on FPR and FNR) on these
    canaries, ties to the first score and lowest threshold. For runs or canaries other than
    the audited ones only: chosen on the audited scores, the bound would be void."""
    included = np.asarray(included, dtype=bool)
    best, best_eps = None, -1.0
    for name, values in scores.items():
        values = np.asarray(values, dtype=float)
        candidates = np.unique(values)
        members, others = np.sort(values[included]), np.sort(values[~included])
        false_pos = others.size - np.searchsorted(others, candidates, side="left")
        false_neg = np.searchsorted(members, candidates, side="left")
        fpr = clopper_pearson_upper(false_pos, others.size, beta / 2)
        fnr = clopper_pearson_upper(false_neg, members.size, beta / 2)
        eps = epsilon_from_rates(fpr, fnr, delta)
        top = int(np.argmax(eps))
        if eps[top] > best_eps:
            best, best_eps = (name, float(candidates[top])), float(eps[top])
    return best
