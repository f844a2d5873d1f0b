"""The attack interface: fit on reference material, score target samples.

An attack never trains or queries models. The audit computes one per-sample statistic
(a *signal*, see :mod:`mialens.signals.statistics`) of every model's outputs and hands
the attack the reference models' values with their membership, then the target's
values. Scores are float64, one per sample; higher means "more likely a member".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from mialens.errors import ConfigError, DataError

ReferenceUse = Literal["none", "offline", "online"]


class AttackParams(BaseModel):
    """Base of every attack's parameter model (unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class SignalSpec:
    """Which statistic of the model outputs an attack consumes, with its parameters."""

    name: str
    params: tuple[tuple[str, float], ...] = ()

    @property
    def kwargs(self) -> dict[str, float]:
        return dict(self.params)


@dataclass(frozen=True)
class ReferenceSignals:
    """Signals of ``R`` reference models.

    ``values[r, n, q]``: signal of reference model ``r`` on audit sample ``n`` under query
    (augmentation) ``q``; ``member[r, n]``: whether sample ``n`` trained model ``r``;
    ``population[r, z, q]``: the same on population samples, which trained no model.
    """

    values: np.ndarray
    member: np.ndarray
    labels: np.ndarray
    population: np.ndarray | None = None
    population_labels: np.ndarray | None = None

    @property
    def num_models(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True)
class TargetSignals:
    """Signals of the target model: ``values[n, q]`` and ``population[z, q]``."""

    values: np.ndarray
    labels: np.ndarray
    population: np.ndarray | None = None
    population_labels: np.ndarray | None = None


class Attack(ABC):
    """A membership-inference attack with scikit-learn-style verbs.

    ``Attack(**params)`` validates parameters against the class's ``Params`` model,
    :meth:`fit` learns from reference signals (a no-op for attacks without references),
    :meth:`score` returns one score per target sample.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    paper: ClassVar[str]
    threat_model: ClassVar[str] = "score"
    references: ClassVar[ReferenceUse] = "none"
    uses_population: ClassVar[bool] = False
    uses_all_queries: ClassVar[bool] = False
    """True when the attack reads every augmented query; else only the first (unmodified)."""
    Params: ClassVar[type[AttackParams]] = AttackParams

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as exc:
            raise ConfigError(f"invalid parameters for attack {self.name!r}:\n{exc}") from exc
        self.fitted_ = False

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"

    @abstractmethod
    def signal(self) -> SignalSpec:
        """The statistic this attack reads."""

    def fit(self, refs: ReferenceSignals | None = None) -> Attack:
        """Learn from reference models; attacks without references need none."""
        if self.references != "none":
            if refs is None:
                raise DataError(f"attack {self.name!r} needs reference models")
            _check_references(self, refs)
        self._fit(refs)
        self.fitted_ = True
        return self

    def _fit(self, refs: ReferenceSignals | None) -> None:  # noqa: B027 - optional hook
        """Attack-specific fitting."""

    def score(self, target: TargetSignals) -> np.ndarray:
        """Membership scores of the target's samples (higher = more likely member)."""
        if not self.fitted_:
            raise RuntimeError(f"call fit() before score() on attack {self.name!r}")
        if self.uses_population and target.population is None:
            raise DataError(f"attack {self.name!r} needs the target's outputs on population data")
        scores = np.asarray(self._score(target), dtype=np.float64)
        if scores.shape != (target.values.shape[0],):
            raise AssertionError(f"{self.name} returned shape {scores.shape}")
        return scores

    @abstractmethod
    def _score(self, target: TargetSignals) -> np.ndarray:
        """Attack-specific scoring."""


def _check_references(attack: Attack, refs: ReferenceSignals) -> None:
    r, n = refs.values.shape[:2]
    if refs.member.shape != (r, n):
        raise DataError(f"reference membership has shape {refs.member.shape}, expected {(r, n)}")
    if r == 0:
        raise DataError(f"attack {attack.name!r} needs at least one reference model")
    n_out = (~refs.member).sum(axis=0)
    if (n_out == 0).any():
        raise DataError(
            f"attack {attack.name!r}: {(n_out == 0).sum()} samples were members of every "
            "reference model; each sample needs at least one reference model it did not train"
        )
    if attack.references == "online":
        n_in = refs.member.sum(axis=0)
        if (n_in == 0).any():
            raise DataError(
                f"attack {attack.name!r} (online) needs every sample to be a member of at least "
                f"one reference model; {(n_in == 0).sum()} samples are in none. Train more "
                "reference models (the audit needs num_models >= 4 for online attacks)."
            )
    if attack.uses_population and refs.population is None:
        raise DataError(f"attack {attack.name!r} needs reference outputs on population data")
