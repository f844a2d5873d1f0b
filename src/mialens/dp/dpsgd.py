"""The one-run f-DP bound with the accountant's curve of DP-SGD (issue 14, scope 3).

DP-SGD with Poisson sampling at rate q, T steps and noise multiplier sigma is the T-fold
composition of the sampled Gaussian mechanism. Its accountant (Opacus' RDP accountant,
``opacus.accountants.RDPAccountant``) bounds its Renyi DP: for each integer order a >= 2
(Mironov, Talwar & Zhang 2019, *Renyi DP of the Sampled Gaussian Mechanism*,
arXiv:1908.10530, Sec. 3.3; their analysis covers both directions of add/remove)

    rho_a = T / (a - 1) * log sum_{k=0..a} C(a, k) (1 - q)^(a - k) q^k exp((k^2 - k) / (2 sigma^2)),

and an (a, rho)-RDP mechanism is (eps, delta_a(eps))-DP for every eps (Balle et al. 2020,
*Hypothesis Testing Interpretations and Renyi DP*, arXiv:1905.09982, Theorem 21; the
conversion Opacus' ``get_privacy_spent`` inverts):

    delta_a(eps) = exp((a - 1) (rho_a - eps) + (a - 1) log(a - 1) - a log a).

So delta(eps) = min_a delta_a(eps) is a valid privacy profile: an upper bound on the true
one. A mechanism that is (eps, delta(eps))-DP for every eps has a trade-off curve above
each f_eps(x) = max(0, 1 - delta(eps) - e^eps x, e^-eps (1 - delta(eps) - x)) (Dong, Roth &
Su 2022, Prop. 2.5), hence above their maximum over any set of eps: a finite grid keeps
fewer pieces, so its curve lies below the full supremum and below the true curve, i.e. it
claims less privacy and stays valid. :class:`AccountantCurve` is that maximum over a grid;
the one-run test of Mahloujifar, Melis & Chaudhuri 2024 (:func:`mialens.dp.fdp.rejects`)
uses it as it uses the Gaussian and (eps, delta) curves.

Integer orders 2..128 are used for the curve: their sum is finite and exact, so no series
truncation can make rho too small (Opacus' fractional orders truncate a series); fewer
orders only weaken the profile, which keeps it valid. Epsilons are reported with Opacus'
own ``get_privacy_spent`` over its default orders, the number a DP-SGD user is told.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from scipy.special import gammaln, logsumexp

from mialens.dp.fdp import EpsDeltaCurve, rejects
from mialens.dp.one_run import guess
from mialens.dp.result import DPAuditResult, check_level
from mialens.dp.search import largest_where
from mialens.errors import ConfigError, DataError

METHOD = "one_run_fdp_dpsgd"
CURVE_ORDERS = tuple(range(2, 129))
GRID_POINTS = 512
_DELTA_SAFETY = 1.0 + 1e-9  # rounds each delta up, so floating point never shrinks it
_FLOOR_DELTA = 1e-30  # the grid of eps runs up to where delta(eps) falls below this


def check_dpsgd(sample_rate: float, steps: int, noise_multiplier: float) -> None:
    """A ConfigError unless 0 < ``sample_rate`` <= 1, ``steps`` >= 1 and sigma > 0."""
    if not (math.isfinite(sample_rate) and 0 < sample_rate <= 1):
        raise ConfigError(f"the sample rate q must lie in (0, 1], got {sample_rate}.")
    if int(steps) != steps or steps < 1:
        raise ConfigError(f"steps must be a positive integer, got {steps}.")
    if not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise ConfigError(f"the noise multiplier must be finite and > 0, got {noise_multiplier}.")


def rdp(
    sample_rate: float, steps: int, noise_multiplier: float, orders: tuple[int, ...]
) -> np.ndarray:
    """rho_a of T steps of the sampled Gaussian mechanism at integer orders (module
    docstring; Mironov et al. 2019, Sec. 3.3), vectorised in log space."""
    check_dpsgd(sample_rate, steps, noise_multiplier)
    alpha = np.asarray(orders, dtype=float)[:, None]
    if np.any(alpha < 2) or np.any(alpha != np.round(alpha)):
        raise ConfigError(f"orders must be integers >= 2, got {orders}.")
    k = np.arange(int(alpha.max()) + 1, dtype=float)[None, :]
    valid = k <= alpha
    log_binomial = gammaln(alpha + 1) - gammaln(k + 1) - gammaln(np.maximum(alpha - k, 0) + 1)
    with np.errstate(divide="ignore", invalid="ignore"):  # q = 1: only k = a remains
        log_rest = np.where(alpha - k > 0, (alpha - k) * np.log1p(-sample_rate), 0.0)
    terms = log_binomial + k * math.log(sample_rate) + log_rest
    terms = terms + (k * k - k) / (2 * noise_multiplier**2)
    log_a = logsumexp(np.where(valid, terms, -np.inf), axis=1)
    return steps * log_a / (alpha[:, 0] - 1)


def profile_delta(
    epsilons: np.ndarray, rho: np.ndarray, orders: tuple[int, ...] = CURVE_ORDERS
) -> np.ndarray:
    """delta(eps) = min(1, min_a delta_a(eps)) of Balle et al. 2020, Theorem 21 (module
    docstring), rounded up by a relative 1e-9, for each eps in ``epsilons``."""
    alpha = np.asarray(orders, dtype=float)[None, :]
    eps = np.asarray(epsilons, dtype=float)[:, None]
    log_delta = (alpha - 1) * (rho[None, :] - eps) + (alpha - 1) * np.log(alpha - 1)
    log_delta = log_delta - alpha * np.log(alpha)
    return np.minimum(1.0, np.exp(log_delta.min(axis=1)) * _DELTA_SAFETY)


class AccountantCurve:
    """The trade-off curve of the accountant's profile for DP-SGD at (q, T, sigma): the
    maximum of the (eps_j, delta(eps_j)) curves over a grid of ``GRID_POINTS`` epsilons
    from 0 to where delta falls below 1e-30, at most 700 (module docstring: valid, below
    the true curve).

    Same protocol as :class:`~mialens.dp.fdp.GaussianCurve`: ``curve(x)`` and
    :meth:`blow_up_inverse`, which is all :func:`~mialens.dp.fdp.rejects` needs.
    """

    def __init__(self, sample_rate: float, steps: int, noise_multiplier: float) -> None:
        self.sample_rate, self.steps = float(sample_rate), int(steps)
        self.noise_multiplier = float(noise_multiplier)
        rho = rdp(sample_rate, steps, noise_multiplier, CURVE_ORDERS)
        alpha = np.asarray(CURVE_ORDERS, dtype=float)
        # delta_a(eps) <= the floor from this eps on (Opacus' conversion at delta = floor)
        top = (
            rho
            + np.log((alpha - 1) / alpha)
            - (math.log(_FLOOR_DELTA) + np.log(alpha)) / (alpha - 1)
        )
        # past eps = 700 a piece adds nothing representable (e^-700 underflows): leaving
        # pieces out only lowers the curve
        self.epsilons = np.linspace(0.0, min(float(top.min()), 700.0), GRID_POINTS)
        self.deltas = profile_delta(self.epsilons, rho)
        self._exp = np.exp(self.epsilons)

    def __repr__(self) -> str:
        return (
            f"AccountantCurve(sample_rate={self.sample_rate}, steps={self.steps}, "
            f"noise_multiplier={self.noise_multiplier})"
        )

    def __call__(self, x):
        """f(x) = max_j max(0, 1 - delta_j - e^eps_j x, e^-eps_j (1 - delta_j - x))."""
        x = np.asarray(x, dtype=float)[..., None]
        rest = 1.0 - self.deltas
        pieces = np.maximum(rest - self._exp * x, (rest - x) / self._exp)
        return np.maximum(pieces.max(axis=-1), 0.0)

    def blow_up_inverse(self, y: float) -> float:
        """The least x with 1 - f(x) >= y: the largest of the pieces' own least x (1 - f
        is the minimum of the pieces' 1 - f_j, each nondecreasing), as in EpsDeltaCurve."""
        if y >= 1.0:
            return float(1.0 - self.deltas.min())
        top = 1.0 - self.deltas - self._exp * (1.0 - y)
        return float(max(0.0, np.max((y - self.deltas) / self._exp), np.max(top)))


@functools.lru_cache(maxsize=4096)
def accountant_curve(sample_rate: float, steps: int, noise_multiplier: float) -> AccountantCurve:
    """:class:`AccountantCurve`, cached (the bisections revisit the same sigmas)."""
    return AccountantCurve(sample_rate, steps, noise_multiplier)


@functools.lru_cache(maxsize=4096)
def accountant_epsilon(
    sample_rate: float, steps: int, noise_multiplier: float, delta: float
) -> float:
    """Opacus' RDP accountant's epsilon at ``delta`` for DP-SGD at (q, T, sigma): its
    ``compute_rdp`` and ``get_privacy_spent`` over ``RDPAccountant.DEFAULT_ALPHAS``
    (cached: a pure function of its arguments)."""
    check_dpsgd(sample_rate, steps, noise_multiplier)
    delta = check_level("delta", delta)
    orders = RDPAccountant.DEFAULT_ALPHAS
    rho = compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=steps, orders=orders)
    with warnings.catch_warnings():  # an optimal order at the edge: still a valid epsilon
        warnings.filterwarnings("ignore", message="Optimal order")
        epsilon, _ = get_privacy_spent(orders=orders, rdp=rho, delta=delta)
    return float(epsilon)


def _least_rejected_noise(
    m: int, guesses: int, correct: int, beta: float, sample_rate: float, steps: int
) -> float:
    """A noise multiplier sigma' whose accountant curve is rejected, at or above the least
    rejected one (inf when none is): the search runs over t = 1 / sigma' and keeps the
    rejected end of its bracket. t = 0 is perfect privacy, the curve 1 - x."""

    def rejected(t: float) -> bool:
        if t == 0.0:
            return rejects(EpsDeltaCurve(0.0, 0.0), m, guesses, correct, beta)
        curve = accountant_curve(sample_rate, steps, 1.0 / t)
        return rejects(curve, m, guesses, correct, beta)

    t_low = largest_where(rejected, tol=1e-6, relative=True, limit=1e3)
    return math.inf if t_low == 0.0 else 1.0 / t_low


@functools.lru_cache(maxsize=4096)
def _bound_at(m, guesses, correct, beta, delta, sample_rate, steps) -> float:
    sigma = _least_rejected_noise(m, guesses, correct, beta, sample_rate, steps)
    return 0.0 if math.isinf(sigma) else accountant_epsilon(sample_rate, steps, sigma, delta)


def epsilon_lower_dpsgd(
    m: int,
    guesses: int,
    correct: int,
    *,
    q: float,
    steps: int,
    beta: float = 0.05,
    delta: float = 1e-5,
) -> DPAuditResult:
    """The (1 - beta) lower bound on the accountant's epsilon of a DP-SGD run at sample rate
    ``q`` and ``steps`` steps, from ``correct`` right guesses of ``guesses`` on ``m`` canaries.

    The family is the accountant's curves f_s of :class:`AccountantCurve` at the same q and
    T, indexed by the noise multiplier s. It is ordered: each rho_a falls as s grows, so
    delta(eps) falls and f_s rises pointwise (more privacy), and a curve that is rejected
    stays rejected for every larger s (tests/dp/test_dpsgd.py checks it on a grid). The
    rejected s thus form an interval [s*, inf). If the run is DP-SGD with noise s_true,
    f_{s_true} holds, so with probability >= 1 - beta it is not rejected: s_true < s*.
    The accountant's epsilon falls strictly with s, so eps_acc(s*, ``delta``) <=
    eps_acc(s_true, ``delta``), the claimed epsilon: that is the bound reported, computed at
    a rejected s' >= s* (never above). Mahloujifar, Melis & Chaudhuri 2024 audit the same
    way with a family of curves (:mod:`mialens.dp.fdp`); here the family is DP-SGD's own.
    It bounds the accountant's epsilon, not the true epsilon (which it exceeds).
    """
    check_dpsgd(q, steps, 1.0)
    beta = check_level("beta", beta)
    delta = check_level("delta", delta)
    if not 0 <= correct <= guesses <= m or m < 1:
        raise DataError(
            f"need 0 <= correct <= guesses <= m, m >= 1, got correct={correct}, "
            f"guesses={guesses}, m={m}."
        )
    return DPAuditResult(
        method=METHOD,
        epsilon_lower=_bound_at(m, guesses, correct, beta, delta, q, steps),
        beta=beta,
        delta=delta,
        m=m,
        guesses=guesses,
        correct=correct,
        ceiling=_bound_at(m, guesses, guesses, beta, delta, q, steps),
    )


def audit_one_run_dpsgd(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    k_plus: int,
    k_minus: int,
    q: float,
    steps: int,
    delta: float,
    beta: float = 0.05,
    seed: int = 0,
) -> DPAuditResult:
    """The one-run audit of a DP-SGD run's canary ``scores`` against its accountant's curve:
    the guesses of :func:`mialens.dp.one_run.guess` (``k_plus``/``k_minus`` fixed in
    advance), then :func:`epsilon_lower_dpsgd`."""
    guesses, correct = guess(scores, included, k_plus=k_plus, k_minus=k_minus, seed=seed)
    return epsilon_lower_dpsgd(
        len(scores), guesses, correct, q=q, steps=steps, beta=beta, delta=delta
    )
