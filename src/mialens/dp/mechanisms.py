"""Mechanisms of exactly known privacy that play the canary games of the DP audits.

The validity harness (issue 14, item 4) checks each bound on mechanisms whose true epsilon
is known in closed form. Each canary's score depends only on its own inclusion bit, so a
mechanism's privacy per canary is that of the one-bit mechanism below:

- randomised response (Warner 1965): score = inclusion bit, flipped with probability
  p = 1 / (1 + e^eps); exactly (eps, 0)-DP, and (log((1 - p - delta) / p), delta)-DP
  tightly (the hockey-stick divergence of the two Bernoulli outputs is 1 - p - e^eps' p);
- the Gaussian mechanism: score = bit * mu + N(0, 1), exactly mu-GDP (the trade-off curve
  of N(0, 1) against N(mu, 1) is G_mu by definition, Dong, Roth & Su 2022, Eq. 6), so
  (gdp_epsilon(mu, delta), delta)-DP tightly (their Corollary 2.13).

``noise_factor`` scales the noise relative to what the claimed epsilon needs; 1 is a correct
implementation, 0.1 the "broken" mechanism of the issue (noise scaled down 10x): randomised
response flips with probability p / 10, the Gaussian mechanism adds N(0, 0.1^2) noise to a
bit of sensitivity 1/mu, i.e. runs at 10 mu. Scores are vectorised over repetitions and
drawn from a numpy Generator; inclusion bits are independent Bernoulli(1/2).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from mialens.dp.gaussian_dp import gdp_delta, gdp_epsilon
from mialens.dp.result import check_level
from mialens.errors import ConfigError

BROKEN_NOISE_FACTOR = 0.1


def _check_claim(epsilon: float, noise_factor: float) -> None:
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ConfigError(f"the claimed epsilon must be finite and > 0, got {epsilon}.")
    if not 0 < noise_factor <= 1:
        raise ConfigError(f"noise_factor must lie in (0, 1], got {noise_factor}.")


@functools.cache
def gdp_mu(epsilon: float, delta: float) -> float:
    """The mu whose mu-GDP gives (``epsilon``, ``delta``)-DP exactly: gdp_delta(eps, mu) =
    ``delta`` (it grows strictly with mu), solved by Brent's method."""
    check_level("delta", delta)
    high = 1.0
    while gdp_delta(epsilon, high) < delta:
        high *= 2.0
    return float(brentq(lambda mu: gdp_delta(epsilon, mu) - delta, 1e-9, high, xtol=1e-14))


@dataclass(frozen=True)
class RandomisedResponse:
    """Randomised response claimed at ``claimed_epsilon``, flipping with probability
    ``noise_factor`` / (1 + e^claimed_epsilon). Not Gaussian DP (its curve has a kink)."""

    claimed_epsilon: float
    noise_factor: float = 1.0
    gaussian_dp = False

    def __post_init__(self) -> None:
        _check_claim(self.claimed_epsilon, self.noise_factor)

    @property
    def name(self) -> str:
        return "randomised_response" + ("" if self.noise_factor == 1 else "_broken")

    @property
    def flip_probability(self) -> float:
        return self.noise_factor / (1.0 + math.exp(self.claimed_epsilon))

    @property
    def threshold(self) -> float:
        """The midpoint of the IN and OUT scores' means (1 - p and p): 1/2."""
        return 0.5

    def true_epsilon(self, delta: float) -> float:
        """The least eps with (eps, ``delta``)-DP: max(0, log((1 - p - delta) / p))."""
        delta = check_level("delta", delta, zero_allowed=True)
        p = self.flip_probability
        return max(0.0, math.log(max(1 - p - delta, p) / p))

    def scores(self, included: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The bits, each flipped independently with the flip probability, as floats."""
        flipped = rng.random(included.shape) < self.flip_probability
        return (included ^ flipped).astype(float)


@dataclass(frozen=True)
class GaussianMechanism:
    """The Gaussian mechanism claimed at (``claimed_epsilon``, ``claim_delta``): mu-GDP with
    mu = gdp_mu(claimed_epsilon, claim_delta) / ``noise_factor``."""

    claimed_epsilon: float
    claim_delta: float = 1e-5
    noise_factor: float = 1.0
    gaussian_dp = True

    def __post_init__(self) -> None:
        _check_claim(self.claimed_epsilon, self.noise_factor)
        check_level("claim_delta", self.claim_delta)

    @property
    def name(self) -> str:
        return "gaussian" + ("" if self.noise_factor == 1 else "_broken")

    @property
    def mu(self) -> float:
        return gdp_mu(self.claimed_epsilon, self.claim_delta) / self.noise_factor

    @property
    def threshold(self) -> float:
        """The midpoint of the IN and OUT scores' means (mu and 0)."""
        return self.mu / 2

    def true_epsilon(self, delta: float) -> float:
        """gdp_epsilon(mu, ``delta``): tight for the Gaussian mechanism."""
        return gdp_epsilon(self.mu, delta)

    def scores(self, included: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """bit * mu + N(0, 1), one independent normal a score."""
        return included * self.mu + rng.standard_normal(included.shape)


Mechanism = RandomisedResponse | GaussianMechanism


def one_run_game(
    mechanism: Mechanism, m: int, repetitions: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, included), both (repetitions, m): one run a row, its m canaries each
    included independently with probability 1/2."""
    included = rng.random((repetitions, m)) < 0.5
    return mechanism.scores(included, rng), included


def many_run_game(
    mechanism: Mechanism, runs: int, repetitions: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(in_scores, out_scores) of one canary over independent runs: (repetitions, runs // 2)
    with it IN, (repetitions, runs - runs // 2) with it OUT."""
    n_in = runs // 2
    in_scores = mechanism.scores(np.ones((repetitions, n_in), dtype=bool), rng)
    out_scores = mechanism.scores(np.zeros((repetitions, runs - n_in), dtype=bool), rng)
    return in_scores, out_scores
