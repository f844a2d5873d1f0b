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

Two DP-SGD mechanisms (Poisson sampling at rate q, T steps, noise multiplier sigma) claim
the epsilon of the accountant (:func:`mialens.dp.dpsgd.accountant_epsilon`, Opacus' RDP
accountant), an upper bound on their true epsilon; "true_epsilon" is the same accountant
at the noise actually added, so coverage against it is implied by coverage against the
unknown true epsilon (a bound below the true epsilon is below any upper bound of it):

- :class:`IdealDiracDPSGD`: Dirac gradient canaries with nothing else in their coordinate:
  at each step an included canary adds C = 1 to its own coordinate with probability q, and
  the coordinate gets N(0, sigma^2); every canary is its own DP-SGD run;
- :class:`LinearDPSGD`: real DP-SGD (per-sample clipping, Poisson sampling, noise) of a
  logistic regression on synthetic data plus input canaries, one coordinate each.

Their ``view`` is what the auditor sees: ``"final"``, the canary's alignment with the
final parameters; ``"all_steps"``, the log-likelihood ratio of its per-step alignments.
They have no threshold known in advance for many-run audits (the log-likelihood ratio at
the claimed noise is not centred where the broken noise puts it), so
:func:`mialens.dp.coverage.coverage` chooses one on separate pilot runs.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

from mialens.dp.dpsgd import accountant_epsilon, check_dpsgd
from mialens.dp.gaussian_dp import gdp_delta, gdp_epsilon
from mialens.dp.result import check_level
from mialens.errors import ConfigError

VIEWS = ("final", "all_steps")
_CHUNK_ELEMENTS = 1 << 22  # draws held at once by the all-steps simulations

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


def step_log_likelihood_ratio(x: np.ndarray, sample_rate: float, noise: float) -> np.ndarray:
    """log p_IN(x) / p_OUT(x) of one step's alignment x of an ideal Dirac canary: OUT,
    x ~ N(0, s^2); IN, x ~ (1 - q) N(0, s^2) + q N(1, s^2). As N(1, s^2)(x) / N(0, s^2)(x)
    = exp((2 x - 1) / (2 s^2)), the ratio is log(1 - q + q exp((2 x - 1) / (2 s^2))),
    computed as logaddexp(log(1 - q), log q + (2 x - 1) / (2 s^2)) (-inf-safe at q = 1).
    Summed over independent steps it is the all-steps log-likelihood ratio, the most
    powerful test of IN against OUT (Neyman-Pearson)."""
    with np.errstate(divide="ignore"):
        log_out = np.log1p(-sample_rate)
    return np.logaddexp(log_out, math.log(sample_rate) + (2 * x - 1) / (2 * noise**2))


@dataclass(frozen=True)
class _DPSGDClaim:
    """DP-SGD at (q, T, sigma) claimed with the accountant at ``claim_delta``; the noise
    actually added is ``noise_factor`` * sigma (0.1: the broken mechanism)."""

    sample_rate: float
    steps: int
    noise_multiplier: float
    view: str = "final"
    noise_factor: float = 1.0
    claim_delta: float = 1e-5
    gaussian_dp = False

    def __post_init__(self) -> None:
        check_dpsgd(self.sample_rate, self.steps, self.noise_multiplier)
        check_level("claim_delta", self.claim_delta)
        if self.view not in VIEWS:
            raise ConfigError(f"unknown view {self.view!r}; known: {', '.join(VIEWS)}.")
        if not 0 < self.noise_factor <= 1:
            raise ConfigError(f"noise_factor must lie in (0, 1], got {self.noise_factor}.")

    @property
    def name(self) -> str:
        broken = "" if self.noise_factor == 1 else "_broken"
        return f"{self.kind}_{self.view}{broken}"

    @property
    def claimed_epsilon(self) -> float:
        return accountant_epsilon(
            self.sample_rate, self.steps, self.noise_multiplier, self.claim_delta
        )

    def true_epsilon(self, delta: float) -> float:
        """The accountant's epsilon at the noise actually added: an upper bound on the true
        epsilon (module docstring)."""
        noise = self.noise_multiplier * self.noise_factor
        return accountant_epsilon(self.sample_rate, self.steps, noise, delta)


@dataclass(frozen=True)
class IdealDiracDPSGD(_DPSGDClaim):
    """Ideal Dirac gradient canaries of DP-SGD (module docstring). Score "final": the sum
    of the T per-step alignments, drawn exactly as Binomial(T, q) * bit + N(0, T s^2);
    "all_steps": the sum of :func:`step_log_likelihood_ratio` at the claimed sigma."""

    kind = "dpsgd_ideal"

    def scores(self, included: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = self.noise_multiplier * self.noise_factor
        if self.view == "final":
            hits = rng.binomial(self.steps, self.sample_rate, included.shape)
            return included * hits + noise * math.sqrt(self.steps) * rng.standard_normal(
                included.shape
            )
        total = np.zeros(included.shape)
        chunk = max(1, _CHUNK_ELEMENTS // max(1, included.size))
        for start in range(0, self.steps, chunk):
            size = (min(chunk, self.steps - start), *included.shape)
            hits = included & (rng.random(size) < self.sample_rate)
            x = hits + noise * rng.standard_normal(size)
            total += step_log_likelihood_ratio(x, self.sample_rate, self.noise_multiplier).sum(0)
        return total


def simulate_ideal_dirac(
    q: float, steps: int, noise_multiplier: float, m: int, *, view: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, included) of one DP-SGD run with ``m`` ideal Dirac canaries, each included
    independently with probability 1/2 (:class:`IdealDiracDPSGD`), drawn from ``seed``."""
    mechanism = IdealDiracDPSGD(q, steps, noise_multiplier, view=view)
    scores, included = one_run_game(mechanism, m, 1, np.random.default_rng(seed))
    return scores[0], included[0]


@dataclass(frozen=True)
class LinearDPSGD(_DPSGDClaim):
    """Real DP-SGD of a logistic regression (no intercept, zero start, plain SGD): per-sample
    gradients clipped to C = 1, Poisson sampling at rate q, N(0, sigma^2 C^2) noise on
    their sum, divided by the expected batch q (n + m) of the whole pool (a constant, as in
    Opacus). The data: ``n_data`` points of two Gaussian classes in ``dim`` coordinates;
    canary c: the point ``canary_scale`` * e_(dim + c), label 1. Its per-sample gradient
    lies on its own coordinate, so its alignment with each update is its clipped gradient
    (C while its loss is not yet small) plus noise; ``learning_rate`` keeps it there."""

    n_data: int = 100
    dim: int = 4
    canary_scale: float = 4.0
    learning_rate: float = 0.5
    kind = "dpsgd_linear"

    def _pool(self, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        labels = np.r_[rng.choice([-1.0, 1.0], self.n_data), np.ones(m)]
        points = rng.standard_normal((self.n_data, self.dim)) + labels[: self.n_data, None]
        features = np.zeros((self.n_data + m, self.dim + m))
        features[: self.n_data, : self.dim] = points
        features[self.n_data :, self.dim :] = self.canary_scale * np.eye(m)
        return features, labels

    def scores(self, included: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        repetitions, m = included.shape
        features, labels = self._pool(m, rng)
        present = np.concatenate([np.ones((repetitions, self.n_data), bool), included], 1)
        norms = np.linalg.norm(features, axis=1)
        scale = self.learning_rate / (self.sample_rate * len(labels))
        noise = self.noise_multiplier * self.noise_factor
        weights = np.zeros((repetitions, features.shape[1]))
        log_ratio = np.zeros((repetitions, m))
        for _ in range(self.steps):
            batch = present & (rng.random(present.shape) < self.sample_rate)
            slope = -labels * expit(-labels * (weights @ features.T))  # d loss / d logit
            clipped = slope * np.minimum(1.0, 1.0 / np.maximum(np.abs(slope) * norms, 1e-300))
            total = (clipped * batch) @ features + noise * rng.standard_normal(weights.shape)
            weights -= scale * total
            alignment = -total[:, self.dim :]  # the update on each canary's unit direction / C
            log_ratio += step_log_likelihood_ratio(
                alignment, self.sample_rate, self.noise_multiplier
            )
        if self.view == "final":  # w . e_c / scale: the sum of the per-step alignments
            return weights[:, self.dim :] / scale
        return log_ratio


Mechanism = RandomisedResponse | GaussianMechanism | IdealDiracDPSGD | LinearDPSGD


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
