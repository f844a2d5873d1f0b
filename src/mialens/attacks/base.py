"""The attack contract: what an attack needs, fit on the adversary's material, score.

Every attack declares what it needs from the audit as data, :attr:`Attack.needs` (a
:class:`Needs`), and the scoring engine (:mod:`mialens.audit.engine`) reads that
declaration and nothing else to decide what to hand it:

* ``input="signals"`` (:class:`SignalAttack`): the audit computes one per-sample
  statistic (a *signal*, :mod:`mialens.signals.statistics`) of every model's outputs;
  ``fit`` gets the reference models' values with their membership, ``score`` the
  target's values. Such attacks never train or query models.
* ``input="queries"`` (:class:`QueryAttack`: label-only, white-box, shadow-model
  classifiers): ``fit`` gets the reference models the adversary trained itself, and the
  target is queried through an adapter that enforces the attack's ``threat_model`` and
  counts every query. Attacks that learn from the target itself (calibration queries,
  shadow models trained on its answers, distillation of it) do so in an explicit
  per-target step, ``prepare(target, data)``, declared by ``needs.target_step`` and run
  by the engine between ``fit`` and ``score`` through the same counting adapter.

In a leave-one-out audit, where each model is attacked with all the others as
references, signal attacks get every model's signals (:class:`ModelSignals`) and
``fit_leaving_out(models, target)``: by default a ``fit`` on the other models' signals;
attacks whose fit is per-sample sums subtract the target from sums over all models.

The verbs: ``fit`` learns only from what the adversary holds (reference models or their
signals, population data), ``prepare`` binds a fitted attack to one target, and
``score`` is a pure function of that state and the target: it changes nothing and
returns one float64 score per sample, higher meaning "more likely a member".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from mialens.errors import ConfigError, DataError
from mialens.signals.leave_one_out import leave_out, side_moments
from mialens.signals.statistics import SignalSpec

ReferenceUse = Literal["none", "offline", "online"]
ThreatModel = Literal["score", "label", "white-box"]


_UNDECLARED = ("references", "uses_population", "uses_all_queries", "chunking")
"""Former class attributes, now fields of :class:`Needs`."""


@dataclass(frozen=True)
class Needs:
    """What an attack needs from the audit; the scoring engine reads only this.

    ``input``: per-sample signals of the models' outputs, or queries to the models.
    ``references``: no reference models, reference models that did not train on a
    sample (``offline``) or also ones that did (``online``: every sample needs an IN
    model). ``population``: data that trained no model (and, for signal attacks, every
    model's signal on it). Signal attacks only: ``all_queries`` when the attack reads
    every augmented query (else only the first, unmodified one); ``chunking="samples"``
    when fit and score are per sample given the population, so that the engine may fit
    and score chunks of samples (``"whole"``: fitting needs every sample at once);
    ``summary_pass`` when a few numbers over all samples (LiRA's pooled variance) come
    first, from :meth:`SignalAttack.chunk_summary` of every chunk handed to
    :meth:`SignalAttack.use_summaries`. Query attacks only: ``target_step`` when the
    attack learns from the target in :meth:`QueryAttack.prepare` before scoring.
    """

    input: Literal["signals", "queries"]
    references: ReferenceUse = "none"
    population: bool = False
    all_queries: bool = False
    chunking: Literal["samples", "whole"] = "whole"
    summary_pass: bool = False
    target_step: bool = False

    def __post_init__(self) -> None:
        signals_only = self.all_queries or self.chunking != "whole" or self.summary_pass
        if self.input == "queries" and signals_only:
            raise ValueError("all_queries, chunking and summary_pass are for signal attacks")
        if self.input == "signals" and self.target_step:
            raise ValueError("target_step is for query attacks")
        if self.summary_pass and self.chunking != "samples":
            raise ValueError("a summary pass runs over chunks of samples: chunking='samples'")


class AttackParams(BaseModel):
    """Base of every attack's parameter model (unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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


@dataclass(frozen=True)
class ModelSignals:
    """Signals of all ``M`` models of a leave-one-out audit, each target attacked with
    the others as references: fields as in :class:`ReferenceSignals`, over all models.

    :meth:`without` gives a side's per-sample moments without some models from sums over
    all models (:mod:`mialens.signals.leave_one_out`), summed once and shared by every
    target, so that attacks fitting means and variances need ``O(N)`` per target.
    """

    values: np.ndarray
    member: np.ndarray
    labels: np.ndarray
    population: np.ndarray | None = None
    population_labels: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def num_models(self) -> int:
        return int(self.values.shape[0])

    def references(self, target: int) -> ReferenceSignals:
        """The signals of every model but ``target``, as :meth:`SignalAttack.fit` takes them."""
        others = np.array([m for m in range(self.num_models) if m != target], dtype=np.int64)
        return ReferenceSignals(
            values=self.values[others],
            member=self.member[others],
            labels=self.labels,
            population=None if self.population is None else self.population[others],
            population_labels=self.population_labels,
        )

    def target(self, target: int) -> TargetSignals:
        return TargetSignals(
            values=self.values[target],
            labels=self.labels,
            population=None if self.population is None else self.population[target],
            population_labels=self.population_labels,
        )

    def shared(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()``, computed once per ``key`` and shared by every target's fit."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def reference_counts(self, target: int) -> tuple[np.ndarray, np.ndarray]:
        """Per sample, the references of ``target`` that trained it and those that did not."""
        if "in_count" not in self._cache:
            self._cache["in_count"] = self.member.sum(axis=0)
        n_in = self._cache["in_count"] - self.member[target]
        return n_in, self.num_models - 1 - n_in

    def without(
        self, side: str, dropped: Sequence[int], guard: Literal["spread", "mean"]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(count, mean, squares)`` per sample of the models on ``side`` but those
        ``dropped``: ``"in"`` (per sample, the models it trained), ``"out"`` (those it did
        not) or ``"population"`` (every model, on the population samples, which trained
        none); see :func:`~mialens.signals.leave_one_out.leave_out` for ``guard`` and the
        rounding."""
        if side not in self._cache:
            if side == "population":
                assert self.population is not None
                values, mask = self.population, np.ones(self.population.shape[:2], dtype=bool)
            elif side in ("in", "out"):
                values, mask = self.values, self.member if side == "in" else ~self.member
            else:
                raise ValueError(f"side must be 'in', 'out' or 'population', not {side!r}")
            self._cache[side] = values, mask, side_moments(values, mask)
        values, mask, moments = self._cache[side]
        return leave_out(moments, values, mask, dropped, guard)


class Attack(ABC):
    """A membership-inference attack with scikit-learn-style verbs (module docstring).

    ``Attack(**params)`` validates parameters against the class's ``Params`` model and
    sets ``self.needs = needs_for(params)``; ``fit`` learns from reference material (a
    no-op for attacks without references) and ``score`` returns one score per target
    sample without changing the attack.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    paper: ClassVar[str]
    threat_model: ClassVar[ThreatModel] = "score"
    needs: Needs
    """The declaration for the default parameters; an instance holds the one for its own
    parameters (:meth:`needs_for`), which is what the engine reads."""
    discrete_scores: ClassVar[bool] = False
    """True when the score takes few values by construction (a label's correctness, a
    percentile among few references): large tie groups are expected, and the metrics'
    tie guard flags the FPR levels they make unreachable."""
    Params: ClassVar[type[AttackParams]] = AttackParams

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        legacy = [a for a in _UNDECLARED if a in vars(cls)]
        if legacy:
            raise TypeError(
                f"{cls.__name__} sets {', '.join(legacy)}: declare what the attack needs as "
                "one class attribute, needs = Needs(...) (mialens.attacks.base.Needs)"
            )
        if not isinstance(getattr(cls, "needs", None), (Needs, type(None))):
            raise TypeError(f"{cls.__name__}.needs must be a Needs(...)")

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as exc:
            raise ConfigError(f"invalid parameters for attack {self.name!r}:\n{exc}") from exc
        self.needs = self.needs_for(self.params)
        self.fitted_ = False

    @classmethod
    def needs_for(cls, params: AttackParams) -> Needs:
        """What the attack needs with these parameters: the class's :attr:`needs`, unless
        an attack's reference use or per-target step depends on a parameter (e.g. the
        calibration of the boundary attack), in which case it overrides this method."""
        return cls.needs

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"

    def clone(self) -> Attack:
        """A fresh, unfitted attack with the same parameters."""
        return type(self)(**self.params.model_dump())

    def extra(self) -> dict[str, Any]:
        """Diagnostics of the fitted (and prepared) attack for the report, e.g. calibrated
        thresholds or which layers carry the signal; JSON-ready."""
        return {}

    def _check_fitted(self) -> None:
        if not self.fitted_:
            raise RuntimeError(f"call fit() before score() on attack {self.name!r}")

    def _check_scores(self, scores: np.ndarray, n: int) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (n,):
            raise AssertionError(f"{self.name} returned shape {scores.shape}, expected {(n,)}")
        return scores


def _check_input(cls: type[Attack], kind: str) -> None:
    if cls.needs.input != kind:
        raise TypeError(f"{cls.__name__} reads {kind}: its needs.input must be {kind!r}")


class SignalAttack(Attack):
    """An attack on one per-sample statistic of the models' outputs (:meth:`signal`)."""

    needs = Needs("signals")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_input(cls, "signals")

    @abstractmethod
    def signal(self) -> SignalSpec:
        """The statistic this attack reads."""

    def fit(self, refs: ReferenceSignals | None = None) -> SignalAttack:
        """Learn from reference models; attacks without references need none."""
        if self.needs.references != "none":
            if refs is None:
                raise DataError(f"attack {self.name!r} needs reference models")
            _check_references(self, refs)
        self._fit(refs)
        self.fitted_ = True
        return self

    def _fit(self, refs: ReferenceSignals | None) -> None:
        """Attack-specific fitting."""

    def fit_leaving_out(self, models: ModelSignals, target: int) -> SignalAttack:
        """Fit with every model but ``target`` as references: the same as
        ``fit(models.references(target))``, up to rounding where an attack subtracts the
        target's values from sums over all models instead (:meth:`_fit_leaving_out`)."""
        if self.needs.references == "none":
            return self.fit(None)
        n_in, n_out = models.reference_counts(target)
        _check_reference_counts(
            self, models.num_models - 1, n_in, n_out, models.population is not None
        )
        self._fit_leaving_out(models, target)
        self.fitted_ = True
        return self

    def _fit_leaving_out(self, models: ModelSignals, target: int) -> None:
        """Attack-specific leave-one-out fitting; by default, a fit on the references."""
        self._fit(models.references(target))

    def chunk_summary(self, refs: ReferenceSignals) -> Any:
        """``needs.summary_pass``: the numbers this chunk of samples contributes to what
        the fit needs over all samples (e.g. block sums of squared deviations)."""
        raise NotImplementedError(f"attack {self.name!r} declares no summary pass")

    def chunk_summary_leaving_out(self, models: ModelSignals, target: int) -> Any:
        """:meth:`chunk_summary` of the references of ``target``; attacks that fit from
        sums (:meth:`_fit_leaving_out`) override it likewise."""
        return self.chunk_summary(models.references(target))

    def use_summaries(self, summaries: list[Any]) -> None:
        """``needs.summary_pass``: fix the global numbers of every later :meth:`fit` from
        the :meth:`chunk_summary` of every chunk of samples (the engine's first pass)."""
        raise NotImplementedError(f"attack {self.name!r} declares no summary pass")

    def score(self, target: TargetSignals) -> np.ndarray:
        """Membership scores of the target's samples (higher = more likely member)."""
        self._check_fitted()
        if self.needs.population and target.population is None:
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

    :meth:`prepare` and :meth:`score` receive the target restricted to the attack's
    threat model (labels only, scores, or the module for white-box attacks), and the
    same ``data``; every query is counted.
    """

    needs = Needs("queries")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_input(cls, "queries")

    def fit(self, refs: QueryReferences | None = None) -> QueryAttack:
        """Learn from reference models (calibration, attack classifiers)."""
        if self.needs.references != "none" and (refs is None or len(refs.models) == 0):
            raise DataError(f"attack {self.name!r} needs reference models")
        self._fit(refs)
        self.fitted_ = True
        self.prepared_ = False
        return self

    def _fit(self, refs: QueryReferences | None) -> None:
        """Attack-specific fitting."""

    def prepare(self, target: Any, data: QueryData) -> QueryAttack:
        """The per-target step (``needs.target_step``): learn from the queryable
        ``target`` what scoring ``data``'s samples needs; each attack's docstring says what
        it does and which queries it makes. Call :meth:`score` with the same ``data``."""
        self._check_fitted()
        if not self.needs.target_step:
            raise RuntimeError(f"attack {self.name!r} has no per-target step")
        self._check_population(data)
        self._prepare(target, data)
        self.prepared_ = True
        return self

    def _prepare(self, target: Any, data: QueryData) -> None:
        """Attack-specific per-target step."""
        raise NotImplementedError

    def score(self, target: Any, data: QueryData) -> np.ndarray:
        """Membership scores of ``data``'s samples against the queryable ``target``."""
        self._check_fitted()
        if self.needs.target_step and not self.prepared_:
            raise RuntimeError(f"call prepare(target, data) before score() on {self.name!r}")
        self._check_population(data)
        return self._check_scores(self._score(target, data), len(data.labels))

    def _check_population(self, data: QueryData) -> None:
        if self.needs.population and data.population_x is None:
            raise DataError(f"attack {self.name!r} needs population samples")

    @abstractmethod
    def _score(self, target: Any, data: QueryData) -> np.ndarray:
        """Attack-specific scoring."""


def _check_references(attack: Attack, refs: ReferenceSignals) -> None:
    r, n = refs.values.shape[:2]
    if refs.member.shape != (r, n):
        raise DataError(f"reference membership has shape {refs.member.shape}, expected {(r, n)}")
    n_in = refs.member.sum(axis=0)
    _check_reference_counts(attack, r, n_in, r - n_in, refs.population is not None)


def _check_reference_counts(
    attack: Attack, num_refs: int, n_in: np.ndarray, n_out: np.ndarray, has_population: bool
) -> None:
    """Every sample has the reference models the attack needs: ``n_in``/``n_out`` per
    sample of the ``num_refs`` references trained on it or not."""
    if num_refs == 0:
        raise DataError(f"attack {attack.name!r} needs at least one reference model")
    if (n_out == 0).any():
        raise DataError(
            f"attack {attack.name!r}: {(n_out == 0).sum()} samples were members of every "
            "reference model; each sample needs at least one reference model it did not train"
        )
    if attack.needs.references == "online" and (n_in == 0).any():
        raise DataError(
            f"attack {attack.name!r} (online) needs every sample to be a member of at least "
            f"one reference model; {(n_in == 0).sum()} samples are in none. Train more "
            "reference models (the audit needs num_models >= 4 for online attacks)."
        )
    if attack.needs.population and not has_population:
        raise DataError(f"attack {attack.name!r} needs reference outputs on population data")
