"""The attack interface: fit on reference material, score target samples.

Signal attacks never train or query models: the audit computes one per-sample
statistic (a *signal*, see :mod:`mialens.signals.statistics`) of every model's outputs
and hands the attack the reference models' values with their membership, then the
target's values. Query attacks (label-only, white-box) query the target themselves,
through an adapter that enforces their threat model and counts queries. Scores are
float64, one per sample; higher means "more likely a member".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from mialens.errors import ConfigError, DataError

ReferenceUse = Literal["none", "offline", "online"]
ThreatModel = Literal["score", "label", "white-box"]


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

    ``Attack(**params)`` validates parameters against the class's ``Params`` model;
    ``fit`` learns from reference material (a no-op for attacks without references) and
    ``score`` returns one score per target sample. Subclasses read either per-sample
    signals of the models' outputs (:class:`SignalAttack`) or query models themselves
    (:class:`QueryAttack`).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    paper: ClassVar[str]
    threat_model: ClassVar[ThreatModel] = "score"
    references: ClassVar[ReferenceUse] = "none"
    uses_population: ClassVar[bool] = False
    uses_all_queries: ClassVar[bool] = False
    """True when the attack reads every augmented query; else only the first (unmodified)."""
    discrete_scores: ClassVar[bool] = False
    """True when the score takes few values by construction (a label's correctness, a
    percentile among few references): large tie groups are expected, and the metrics'
    tie guard flags the FPR levels they make unreachable."""
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

    def clone(self) -> Attack:
        """A fresh, unfitted attack with the same parameters."""
        return type(self)(**self.params.model_dump())

    def extra(self) -> dict[str, Any]:
        """Diagnostics of the fitted (and, for query attacks, scored) attack for the
        report, e.g. calibrated thresholds or which layers carry the signal; JSON-ready."""
        return {}

    def _check_fitted(self) -> None:
        if not self.fitted_:
            raise RuntimeError(f"call fit() before score() on attack {self.name!r}")

    def _check_scores(self, scores: np.ndarray, n: int) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (n,):
            raise AssertionError(f"{self.name} returned shape {scores.shape}, expected {(n,)}")
        return scores


class SignalAttack(Attack):
    """An attack on one per-sample statistic of the models' outputs (:meth:`signal`)."""

    chunking: ClassVar[Literal["samples", "whole"]] = "whole"
    """``samples`` when fit and score are per sample (given any population data), so the
    engine may score chunks of samples; ``whole`` when fitting needs every sample."""

    @abstractmethod
    def signal(self) -> SignalSpec:
        """The statistic this attack reads."""

    def fit(self, refs: ReferenceSignals | None = None) -> SignalAttack:
        """Learn from reference models; attacks without references need none."""
        if self.references != "none":
            if refs is None:
                raise DataError(f"attack {self.name!r} needs reference models")
            _check_references(self, refs)
        self._fit(refs)
        self.fitted_ = True
        return self

    def _fit(self, refs: ReferenceSignals | None) -> None:
        """Attack-specific fitting."""

    def score(self, target: TargetSignals) -> np.ndarray:
        """Membership scores of the target's samples (higher = more likely member)."""
        self._check_fitted()
        if self.uses_population and target.population is None:
            raise DataError(f"attack {self.name!r} needs the target's outputs on population data")
        return self._check_scores(self._score(target), target.values.shape[0])

    @abstractmethod
    def _score(self, target: TargetSignals) -> np.ndarray:
        """Attack-specific scoring."""


@dataclass(frozen=True)
class QueryData:
    """The audit's samples as an adversary holds them, for attacks that query models.

    ``x``/``labels`` are the audited samples; ``population_x``/``population_labels``
    samples that trained no model; ``train_model(x, y, seed)`` trains a fresh model with
    the audit's recipe and returns it as a queryable target (for attacks that train
    shadow models, e.g. on data relabelled by the target); ``build_model()`` returns an
    untrained network of the audit's architecture (for attacks with training loops of
    their own, such as distillation). ``seed`` seeds the attack's own randomness.
    """

    x: np.ndarray
    labels: np.ndarray
    population_x: np.ndarray | None = None
    population_labels: np.ndarray | None = None
    train_model: Callable[[np.ndarray, np.ndarray, int], Any] | None = None
    build_model: Callable[[], Any] | None = None
    seed: int = 0


@dataclass(frozen=True)
class QueryReferences:
    """Reference models the adversary trained itself (full access), with membership."""

    models: Sequence[Any]
    member: np.ndarray
    data: QueryData


class QueryAttack(Attack):
    """An attack that queries the target itself: label-only, white-box, shadow models.

    :meth:`score` receives the target restricted to the attack's threat model (labels
    only, scores, or the module for white-box attacks); queries are counted.
    """

    def fit(self, refs: QueryReferences | None = None) -> QueryAttack:
        """Learn from reference models (calibration, attack classifiers)."""
        if self.references != "none" and (refs is None or len(refs.models) == 0):
            raise DataError(f"attack {self.name!r} needs reference models")
        self._fit(refs)
        self.fitted_ = True
        return self

    def _fit(self, refs: QueryReferences | None) -> None:
        """Attack-specific fitting."""

    def score(self, target: Any, data: QueryData) -> np.ndarray:
        """Membership scores of ``data``'s samples against the queryable ``target``."""
        self._check_fitted()
        if self.uses_population and data.population_x is None:
            raise DataError(f"attack {self.name!r} needs population samples")
        return self._check_scores(self._score(target, data), len(data.labels))

    @abstractmethod
    def _score(self, target: Any, data: QueryData) -> np.ndarray:
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
