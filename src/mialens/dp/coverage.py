"""Coverage of the DP audits' lower bounds over seeded repetitions of a known mechanism.

The validity harness of issue 14 (item 4): run one method on R independent repetitions of
a mechanism of :mod:`mialens.dp.mechanisms` and report its coverage (share of repetitions
with epsilon_lower <= the true epsilon, >= 1 - beta for a valid bound), its detection rate
(share with epsilon_lower > the claimed epsilon, which proves a broken mechanism broken),
the median bound and the ceiling. Methods:

- ``one_run``: Steinke, Nasr & Jagielski 2023 (:mod:`mialens.dp.one_run`);
- ``one_run_fdp_gaussian`` / ``one_run_fdp_eps_delta``: Mahloujifar, Melis & Chaudhuri
  2024 (:mod:`mialens.dp.fdp`) with the Gaussian or the (eps, delta) curve; the Gaussian
  curve is valid only for Gaussian-DP mechanisms, so it is refused on randomised response;
- ``many_run``: Clopper-Pearson at the mechanism's own threshold (the midpoint of its IN
  and OUT score means, fixed before any score is drawn), :mod:`mialens.dp.many_run`, with
  ``m`` independent runs, half with the canary IN.

The one-run guesses take k_plus = k_minus = ``k``, fixed before the audited scores are
drawn (:func:`pilot_k` chooses it on separate, independently seeded repetitions). The
one-run bounds depend on the data only through (guesses, correct), so they are cached by
that pair.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from mialens.dp import fdp, one_run
from mialens.dp.many_run import audit_many_runs
from mialens.dp.mechanisms import Mechanism, many_run_game, one_run_game
from mialens.errors import ConfigError

ONE_RUN_METHODS = ("one_run", "one_run_fdp_gaussian", "one_run_fdp_eps_delta")
METHODS = (*ONE_RUN_METHODS, "many_run")


@dataclass(frozen=True, kw_only=True)
class CoverageReport:
    """One method on R repetitions of one mechanism: the bounds and their summaries."""

    mechanism: str
    method: str
    claimed_epsilon: float
    true_epsilon: float
    m: int
    k: int | None
    beta: float
    delta: float
    epsilon_lower: np.ndarray
    ceiling: float

    @property
    def coverage(self) -> float:
        return float(np.mean(self.epsilon_lower <= self.true_epsilon))

    @property
    def detection_rate(self) -> float:
        return float(np.mean(self.epsilon_lower > self.claimed_epsilon))

    @property
    def median_epsilon_lower(self) -> float:
        return float(np.median(self.epsilon_lower))

    def to_json(self) -> dict[str, Any]:
        return {
            "mechanism": self.mechanism,
            "method": self.method,
            "claimed_epsilon": self.claimed_epsilon,
            "true_epsilon": self.true_epsilon,
            "m": self.m,
            "k_plus": self.k,
            "k_minus": self.k,
            "repetitions": int(self.epsilon_lower.size),
            "beta": self.beta,
            "delta": self.delta,
            "coverage": self.coverage,
            "detection_rate": self.detection_rate,
            "median_epsilon_lower": self.median_epsilon_lower,
            "ceiling": self.ceiling,
            "ceiling_exceeds_claim": self.ceiling > self.claimed_epsilon,
        }


@functools.cache
def one_run_bound(
    method: str, m: int, guesses: int, correct: int, beta: float, delta: float
) -> float:
    """The one-run ``method``'s epsilon_lower from (guesses, correct) on m canaries."""
    if method == "one_run":
        return one_run.epsilon_lower(m, guesses, correct, beta=beta, delta=delta)
    family = method.removeprefix("one_run_fdp_")
    result = fdp.epsilon_lower(m, guesses, correct, beta=beta, delta=delta, family=family)
    return result.epsilon_lower


def one_run_counts(
    mechanism: Mechanism, *, m: int, k: int, repetitions: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(guesses, correct) of each repetition's one-run game, k_plus = k_minus = ``k``; ties
    broken by a permutation seeded with the repetition's index (never with the bits)."""
    scores, included = one_run_game(mechanism, m, repetitions, np.random.default_rng(seed))
    counts = [
        one_run.guess(scores[r], included[r], k_plus=k, k_minus=k, seed=r)
        for r in range(repetitions)
    ]
    guesses, correct = np.array(counts, dtype=int).reshape(repetitions, 2).T
    return guesses, correct


def _check_method(mechanism: Mechanism, method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; known: {', '.join(METHODS)}.")
    if method == "one_run_fdp_gaussian" and not mechanism.gaussian_dp:
        raise ConfigError(
            f"one_run_fdp_gaussian bounds the epsilon of a Gaussian-DP mechanism; "
            f"{mechanism.name} is not one (the least mu-GDP it satisfies implies an epsilon "
            "above its own), so its bound would not bound this mechanism's epsilon."
        )


def coverage(
    mechanism: Mechanism,
    method: str,
    *,
    m: int,
    k: int | None,
    repetitions: int,
    beta: float = 0.05,
    delta: float = 1e-5,
    seed: int = 0,
) -> CoverageReport:
    """``method`` on ``repetitions`` seeded repetitions of ``mechanism`` (module docstring).

    One-run methods: m canaries, k_plus = k_minus = ``k``; ``many_run``: m runs, ``k``
    unused (None). The same ``seed`` gives every one-run method the same games.
    """
    _check_method(mechanism, method)
    if method == "many_run":
        in_scores, out_scores = many_run_game(
            mechanism, m, repetitions, np.random.default_rng(seed)
        )
        results = [
            audit_many_runs(i, o, threshold=mechanism.threshold, delta=delta, beta=beta)
            for i, o in zip(in_scores, out_scores, strict=True)
        ]
        bounds = np.array([result.epsilon_lower for result in results])
        top, k = results[0].ceiling, None
    else:
        if k is None:
            raise ConfigError(f"{method} needs k (k_plus = k_minus), fixed in advance.")
        guesses, correct = one_run_counts(mechanism, m=m, k=k, repetitions=repetitions, seed=seed)
        bounds = np.array(
            [
                one_run_bound(method, m, g, c, beta, delta)
                for g, c in zip(guesses, correct, strict=True)
            ]
        )
        top = one_run_bound(method, m, 2 * k, 2 * k, beta, delta)
    return CoverageReport(
        mechanism=mechanism.name,
        method=method,
        claimed_epsilon=mechanism.claimed_epsilon,
        true_epsilon=mechanism.true_epsilon(delta),
        m=m,
        k=k,
        beta=beta,
        delta=delta,
        epsilon_lower=bounds,
        ceiling=top,
    )


def pilot_k(
    mechanism: Mechanism,
    *,
    m: int,
    candidates: tuple[int, ...],
    repetitions: int,
    beta: float = 0.05,
    delta: float = 1e-5,
    seed: int,
) -> int:
    """The k among ``candidates`` with the largest median Steinke bound on ``repetitions``
    pilot games drawn from ``seed``. Pass a seed never used for the audited repetitions:
    then k is fixed in advance of (independently of) the games it is used on."""
    medians = [
        coverage(
            mechanism,
            "one_run",
            m=m,
            k=k,
            repetitions=repetitions,
            beta=beta,
            delta=delta,
            seed=seed,
        ).median_epsilon_lower
        for k in candidates
    ]
    return candidates[int(np.argmax(medians))]
