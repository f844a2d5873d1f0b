"""Coverage of the DP audits' lower bounds over seeded repetitions of a known mechanism.

The validity harness of issue 14 (item 4): run one method on R independent repetitions of
a mechanism of :mod:`mialens.dp.mechanisms` and report its coverage (share of repetitions
with epsilon_lower <= the true epsilon, >= 1 - beta for a valid bound), its detection rate
(share with epsilon_lower > the claimed epsilon, which proves a broken mechanism broken),
the median bound and the ceiling. Methods:

- ``one_run``: Steinke, Nasr & Jagielski 2023 (:mod:`mialens.dp.one_run`);
- ``one_run_fdp_gaussian`` / ``one_run_fdp_eps_delta``: Mahloujifar, Melis & Chaudhuri
  2024 (:mod:`mialens.dp.fdp`) with the Gaussian or the (eps, delta) curve; the Gaussian
  curve is valid only for Gaussian-DP mechanisms, so it is refused on randomised response
  and DP-SGD;
- ``one_run_fdp_dpsgd``: the same test with the accountant's curve of DP-SGD
  (:mod:`mialens.dp.dpsgd`), only on the DP-SGD mechanisms, at their q and T;
- ``many_run``: Clopper-Pearson at the mechanism's own threshold (the midpoint of its IN
  and OUT score means, fixed before any score is drawn; for DP-SGD, the midpoint of the
  IN and OUT medians of ``m`` pilot runs from a separate seed), :mod:`mialens.dp.many_run`,
  with ``m`` independent runs, half with the canary IN. For the DP-SGD mechanisms the
  canaries of one training run, each alone in its coordinate, are independent runs.

The one-run guesses take k_plus = k_minus = ``k``, fixed before the audited scores are
drawn (:func:`pilot_k` chooses it on separate, independently seeded repetitions). The
one-run bounds depend on the data only through (guesses, correct), so they are cached by
that pair. The games of a (mechanism, m, repetitions, seed) are drawn once and shared
by the methods and the pilot's candidates (the DP-SGD mechanisms train for them).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from mialens.dp import fdp, one_run
from mialens.dp.dpsgd import epsilon_lower_dpsgd
from mialens.dp.gaussian_dp import estimate_gdp_from_steps
from mialens.dp.many_run import audit_many_runs
from mialens.dp.mechanisms import IdealDiracDPSGD, Mechanism, many_run_game, one_run_game
from mialens.errors import ConfigError

ONE_RUN_METHODS = (
    "one_run",
    "one_run_fdp_gaussian",
    "one_run_fdp_eps_delta",
    "one_run_fdp_dpsgd",
)
METHODS = (*ONE_RUN_METHODS, "many_run")
PILOT_SEED_OFFSET = 1_000_003


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
    method: str,
    m: int,
    guesses: int,
    correct: int,
    beta: float,
    delta: float,
    dpsgd: tuple[float, int] | None = None,
) -> float:
    """The one-run ``method``'s epsilon_lower from (guesses, correct) on m canaries;
    ``dpsgd`` = (q, steps) of the accountant's curve for ``one_run_fdp_dpsgd``."""
    if method == "one_run":
        return one_run.epsilon_lower(m, guesses, correct, beta=beta, delta=delta)
    if method == "one_run_fdp_dpsgd":
        if dpsgd is None:
            raise ConfigError("one_run_fdp_dpsgd needs the DP-SGD run's (q, steps).")
        q, steps = dpsgd
        result = epsilon_lower_dpsgd(m, guesses, correct, q=q, steps=steps, beta=beta, delta=delta)
        return result.epsilon_lower
    family = method.removeprefix("one_run_fdp_")
    result = fdp.epsilon_lower(m, guesses, correct, beta=beta, delta=delta, family=family)
    return result.epsilon_lower


@functools.lru_cache(maxsize=16)
def _games(
    mechanism: Mechanism, m: int, repetitions: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The one-run games of :func:`~mialens.dp.mechanisms.one_run_game` from ``seed``."""
    return one_run_game(mechanism, m, repetitions, np.random.default_rng(seed))


def gdp_estimates(
    mechanism: Mechanism, *, m: int, repetitions: int, seed: int, delta: float = 1e-5
) -> np.ndarray:
    """The Gaussian-DP estimate of Nasr et al. 2023
    (:func:`~mialens.dp.gaussian_dp.estimate_gdp_from_steps`, one step) on each repetition
    of the one-run games that the bounds of the same ``seed`` see: each canary's score is
    one observation, IN or OUT by its bit. Estimates, not bounds: no coverage applies."""
    scores, included = _games(mechanism, m, repetitions, seed)
    return np.array(
        [
            estimate_gdp_from_steps(s[b], s[~b], steps=1, delta=delta).epsilon_lower
            for s, b in zip(scores, included, strict=True)
        ]
    )


def one_run_counts(
    mechanism: Mechanism, *, m: int, k: int, repetitions: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(guesses, correct) of each repetition's one-run game, k_plus = k_minus = ``k``; ties
    broken by a permutation seeded with the repetition's index (never with the bits)."""
    scores, included = _games(mechanism, m, repetitions, seed)
    counts = [
        one_run.guess(scores[r], included[r], k_plus=k, k_minus=k, seed=r)
        for r in range(repetitions)
    ]
    guesses, correct = np.array(counts, dtype=int).reshape(repetitions, 2).T
    return guesses, correct


def _dpsgd_of(mechanism: Mechanism) -> tuple[float, int] | None:
    """(q, steps) of a DP-SGD mechanism, None for the others."""
    if not hasattr(mechanism, "sample_rate"):
        return None
    return mechanism.sample_rate, mechanism.steps


def methods_for(mechanism: Mechanism) -> list[str]:
    """Every method valid for ``mechanism``: the Gaussian curve only on Gaussian DP, the
    accountant's curve only on DP-SGD."""
    dpsgd = _dpsgd_of(mechanism) is not None
    return [
        method
        for method in METHODS
        if (mechanism.gaussian_dp or method != "one_run_fdp_gaussian")
        and (dpsgd or method != "one_run_fdp_dpsgd")
    ]


def _many_run_threshold(mechanism: Mechanism, runs: int, seed: int) -> float:
    """The mechanism's own threshold, or for DP-SGD the midpoint of the IN and OUT medians
    of ``runs`` pilot runs drawn from a seed never used for audited games."""
    if _dpsgd_of(mechanism) is None:
        return mechanism.threshold
    pilot = np.random.default_rng(seed + PILOT_SEED_OFFSET)
    in_scores, out_scores = many_run_game(mechanism, runs, 1, pilot)
    return float(np.median(in_scores) + np.median(out_scores)) / 2


def _check_method(mechanism: Mechanism, method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; known: {', '.join(METHODS)}.")
    if method == "one_run_fdp_dpsgd" and _dpsgd_of(mechanism) is None:
        raise ConfigError(
            f"one_run_fdp_dpsgd tests the accountant's curve of DP-SGD; {mechanism.name} "
            "is not DP-SGD."
        )
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
        threshold = _many_run_threshold(mechanism, m, seed)
        results = [
            audit_many_runs(i, o, threshold=threshold, delta=delta, beta=beta)
            for i, o in zip(in_scores, out_scores, strict=True)
        ]
        bounds = np.array([result.epsilon_lower for result in results])
        top, k = results[0].ceiling, None
    else:
        if k is None:
            raise ConfigError(f"{method} needs k (k_plus = k_minus), fixed in advance.")
        guesses, correct = one_run_counts(mechanism, m=m, k=k, repetitions=repetitions, seed=seed)
        dpsgd = _dpsgd_of(mechanism)
        bounds = np.array(
            [
                one_run_bound(method, m, g, c, beta, delta, dpsgd)
                for g, c in zip(guesses, correct, strict=True)
            ]
        )
        top = one_run_bound(method, m, 2 * k, 2 * k, beta, delta, dpsgd)
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


PILOT_K = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
"""The k (k_plus = k_minus) a pilot tries, those up to m / 2 (:func:`pilot_candidates`)."""


def pilot_candidates(m: int, grid: tuple[int, ...] = PILOT_K) -> tuple[int, ...]:
    """The k of ``grid`` that ``m`` canaries allow (k_plus + k_minus = 2k <= m)."""
    return tuple(k for k in grid if k <= m // 2)


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


def ideal_bound(
    q: float,
    steps: int,
    noise_multiplier: float,
    m: int,
    *,
    view: str,
    method: str,
    beta: float = 0.05,
    delta: float = 1e-5,
    k: int | None = None,
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
    k_candidates: tuple[int, ...] = PILOT_K,
) -> float:
    """The median one-run ``method`` bound over one game a seed in ``seeds`` of DP-SGD at
    (``q``, ``steps``, ``noise_multiplier``) with ``m`` ideal Dirac canaries seen in
    ``view`` (:class:`~mialens.dp.mechanisms.IdealDiracDPSGD`): what the best canaries give.

    ``k`` (k_plus = k_minus) is given, or chosen by :func:`pilot_k` among the
    ``k_candidates`` up to m / 2 on five pilot games from a seed outside ``seeds``.
    """
    mechanism = IdealDiracDPSGD(q, steps, noise_multiplier, view=view)
    if method == "many_run" or method not in ONE_RUN_METHODS:
        raise ConfigError(f"ideal_bound takes a one-run method, got {method!r}.")
    _check_method(mechanism, method)
    if k is None:
        candidates = pilot_candidates(m, k_candidates)
        pilot_seed = max(seeds) + PILOT_SEED_OFFSET
        k = pilot_k(
            mechanism, m=m, candidates=candidates, repetitions=5, beta=beta, delta=delta,
            seed=pilot_seed,
        )  # fmt: skip
    bounds = [
        coverage(
            mechanism, method, m=m, k=k, repetitions=1, beta=beta, delta=delta, seed=seed
        ).epsilon_lower[0]
        for seed in seeds
    ]
    return float(np.median(bounds))
