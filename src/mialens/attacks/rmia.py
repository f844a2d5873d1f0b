"""Robust Membership Inference Attack (RMIA), Zarifzadeh, Liu & Shokri 2024, Low-Cost
High-Power Membership Inference Attacks (ICML).

With ``Pr(x | theta)`` the target's probability of the true label (softmax with
temperature ``T``) and ``Pr(x)`` its average over reference models, the pairwise
likelihood ratio against a population sample ``z`` is (Eq. 3)

    LR(x, z) = [Pr(x | theta) / Pr(x)] / [Pr(z | theta) / Pr(z)]

and the score is the fraction of population samples it dominates (Eq. 4)

    Score(x) = Pr_z[ LR(x, z) >= gamma ].

Online, ``Pr(x) = (mean over IN references + mean over OUT references) / 2``: the
balanced mixture the paper's half-IN reference set estimates, made exact so that an
unequal IN/OUT count (as in leave-one-out audits) cannot leak membership. Offline
(App. B.2), ``Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2`` approximates the missing IN
models by a linear function of the OUT average. Population samples trained no model,
so ``Pr(z)`` is their reference average (offline: passed through the same formula).

The score is computed without the ``N x Z`` matrix of ratios: with
``r_x = Pr(x | theta) / Pr(x)``, ``LR(x, z) >= gamma`` iff ``r_z <= r_x / gamma``, so
sorting the ``Z`` population ratios once and binary-searching each sample costs
``O((N + Z) log Z)`` time and ``O(N + Z)`` memory. With several queries, per-query
scores are averaged.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
from pydantic import Field

from mialens.attacks.base import (
    AttackParams,
    ReferenceSignals,
    SignalAttack,
    SignalSpec,
    TargetSignals,
)

_TINY = np.finfo(np.float64).tiny


class RMIAParams(AttackParams):
    gamma: float = Field(default=1.0, gt=0.0, description="threshold on the pairwise ratio")
    temperature: float = Field(default=1.0, gt=0.0, description="softmax temperature")


class RMIAOfflineParams(RMIAParams):
    a: float = Field(default=0.3, ge=0.0, le=1.0, description="offline IN-approximation slope")


def _mean_over(values: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Mean over the models selected by ``side`` (R, N) of ``values`` (R, N, Q)."""
    weights = side[:, :, None].astype(np.float64)
    return (values * weights).sum(axis=0) / weights.sum(axis=0)


def dominance_fraction(ratio_x: np.ndarray, ratio_z: np.ndarray, gamma: float) -> np.ndarray:
    """``mean_z [ratio_x / ratio_z >= gamma]`` for every x, by sorting, per query column.

    ``ratio_x`` is ``(N, Q)`` and ``ratio_z`` ``(Z, Q)`` (non-negative); each query column
    of ``x`` is compared with the same column of the population.
    """
    n_pop = ratio_z.shape[0]
    scores = np.empty(ratio_x.shape)
    for q in range(ratio_x.shape[1]):
        sorted_z = np.sort(ratio_z[:, q])
        scores[:, q] = np.searchsorted(sorted_z, ratio_x[:, q] / gamma, side="right") / n_pop
    return scores


class _RMIA(SignalAttack):
    uses_population = True
    chunking = "samples"  # per sample given the population (see audit.engine)
    uses_all_queries = True
    paper = (
        "Zarifzadeh, Liu & Shokri 2024, Low-Cost High-Power Membership Inference Attacks "
        "(ICML), Eq. 3-4"
    )

    def signal(self) -> SignalSpec:
        return SignalSpec("probability", (("temperature", self.params.temperature),))

    @abstractmethod
    def _marginals(self, refs: ReferenceSignals) -> tuple[np.ndarray, np.ndarray]:
        """``Pr(x)`` of the audit samples and ``Pr(z)`` of the population, each (., Q)."""

    def _fit(self, refs: ReferenceSignals | None) -> None:
        assert refs is not None and refs.population is not None
        pr_x, pr_z = self._marginals(refs)
        self.pr_x_ = np.maximum(pr_x, _TINY)
        self.pr_z_ = np.maximum(pr_z, _TINY)

    def _score(self, target: TargetSignals) -> np.ndarray:
        assert target.population is not None
        ratio_x = target.values / self.pr_x_
        ratio_z = target.population / self.pr_z_
        return dominance_fraction(ratio_x, ratio_z, self.params.gamma).mean(axis=1)


class RMIAOnline(_RMIA):
    """RMIA with IN and OUT reference models (see the module docstring)."""

    name = "rmia_online"
    summary = (
        "RMIA online: pairwise likelihood ratios against population samples, IN+OUT references"
    )
    references = "online"
    Params = RMIAParams

    def _marginals(self, refs: ReferenceSignals) -> tuple[np.ndarray, np.ndarray]:
        pr_x = 0.5 * (_mean_over(refs.values, refs.member) + _mean_over(refs.values, ~refs.member))
        return pr_x, refs.population.mean(axis=0)


class RMIAOffline(_RMIA):
    """RMIA with OUT reference models and the offline ``a`` approximation (module docstring)."""

    name = "rmia_offline"
    summary = (
        "RMIA offline: pairwise likelihood ratios, OUT references with the linear IN approximation"
    )
    references = "offline"
    Params = RMIAOfflineParams

    def _marginals(self, refs: ReferenceSignals) -> tuple[np.ndarray, np.ndarray]:
        a = self.params.a
        pr_out_x = _mean_over(refs.values, ~refs.member)
        pr_out_z = refs.population.mean(axis=0)
        return 0.5 * ((1 + a) * pr_out_x + (1 - a)), 0.5 * ((1 + a) * pr_out_z + (1 - a))
