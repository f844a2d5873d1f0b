"""Scoring engine: run attacks on model outputs, each target against its references.

Input is the logits of ``M`` models on the audit samples (and population samples)
with the models' membership, and, for attacks that query models themselves, the models
as queryable targets. Each model listed as a target is attacked with all the other
models as references (leave-one-out), which gives every metric a spread over targets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mialens.attacks.base import (
    Attack,
    QueryAttack,
    QueryData,
    QueryReferences,
    ReferenceSignals,
    SignalAttack,
    SignalSpec,
    TargetSignals,
)
from mialens.errors import DataError
from mialens.signals.statistics import compute_signal
from mialens.targets.adapters import Target, restrict
from mialens.validation import check_finite, check_labels, check_member_mask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelOutputs:
    """Logits of ``M`` models: ``logits (M, N, Q, C)`` on the audit samples, ``member
    (M, N)`` their training membership, and optionally ``population_logits (M, Z, Q, C)``
    on population samples that trained no model."""

    logits: np.ndarray
    member: np.ndarray
    labels: np.ndarray
    population_logits: np.ndarray | None = None
    population_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        logits = np.asarray(self.logits, dtype=np.float32)
        if logits.ndim == 3:  # no query axis
            logits = logits[:, :, None, :]
        if logits.ndim != 4:
            raise DataError(
                f"logits must have shape (models, samples, [queries,] classes); got {logits.shape}"
            )
        m, n, _, c = logits.shape
        check_finite(logits, "logits")
        labels = check_labels(self.labels, c, "labels", n=n)
        member = check_member_mask(self.member, (m, n), "member")
        object.__setattr__(self, "logits", logits)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "member", member)
        if self.population_logits is not None:
            pop = np.asarray(self.population_logits, dtype=np.float32)
            if pop.ndim == 3:
                pop = pop[:, :, None, :]
            if pop.ndim != 4 or pop.shape[0] != m or pop.shape[2:] != logits.shape[2:]:
                raise DataError(
                    f"population logits must have shape ({m}, population, "
                    f"{logits.shape[2]}, {c}); got {pop.shape}"
                )
            check_finite(pop, "population logits")
            pop_labels = check_labels(
                self.population_labels, c, "population labels", n=pop.shape[1]
            )
            object.__setattr__(self, "population_logits", pop)
            object.__setattr__(self, "population_labels", pop_labels)

    @property
    def num_models(self) -> int:
        return int(self.logits.shape[0])


class _Signals:
    """Per-model signal values, computed once per signal spec."""

    def __init__(self, outputs: ModelOutputs) -> None:
        self.outputs = outputs
        self.cache: dict[SignalSpec, tuple[np.ndarray, np.ndarray | None]] = {}

    def get(self, spec: SignalSpec) -> tuple[np.ndarray, np.ndarray | None]:
        if spec not in self.cache:
            out = self.outputs
            labels = out.labels[None, :, None]
            values = compute_signal(spec.name, out.logits, labels, **spec.kwargs)
            pop = None
            if out.population_logits is not None:
                pop_labels = out.population_labels[None, :, None]
                pop = compute_signal(spec.name, out.population_logits, pop_labels, **spec.kwargs)
            self.cache[spec] = (values, pop)
        return self.cache[spec]


@dataclass
class Scores:
    """Scores ``(T, N)`` of every attack, and the target queries per sample each made."""

    scores: dict[str, np.ndarray]
    queries_per_sample: dict[str, float]


def score_targets(
    attacks: Sequence[Attack],
    outputs: ModelOutputs,
    targets: Sequence[int],
    models: Sequence[Target] | None = None,
    data: QueryData | None = None,
    on_step: Callable[[], None] | None = None,
) -> Scores:
    """Score every attack against each target; references are all non-target models.

    Signal attacks read ``outputs``; query attacks need ``models`` (queryable, in the
    order of ``outputs``) and the samples as ``data``.
    """
    signals = _Signals(outputs)
    scores: dict[str, np.ndarray] = {}
    queries: dict[str, float] = {}
    for attack in attacks:
        rows, counts = [], []
        for t in targets:
            if isinstance(attack, SignalAttack):
                rows.append(_score_signal_attack(attack, signals, t))
                counts.append(outputs.logits.shape[2] if attack.uses_all_queries else 1)
            elif isinstance(attack, QueryAttack):
                row, n_queries = _score_query_attack(attack, outputs, models, data, t)
                rows.append(row)
                counts.append(n_queries / len(outputs.labels))
            else:
                raise TypeError(f"{type(attack).__name__} is neither a signal nor a query attack")
            if on_step is not None:
                on_step()
        scores[attack.name] = np.stack(rows)
        queries[attack.name] = float(np.mean(counts))
    return Scores(scores, queries)


def _others(m: int, t: int) -> np.ndarray:
    return np.array([i for i in range(m) if i != t], dtype=np.int64)


def _score_signal_attack(attack: SignalAttack, signals: _Signals, t: int) -> np.ndarray:
    outputs = signals.outputs
    needs_pop = attack.uses_population
    if needs_pop and outputs.population_logits is None:
        raise DataError(f"attack {attack.name!r} needs population data; none was given")
    values, pop = signals.get(attack.signal())
    refs = None
    if attack.references != "none":
        others = _others(outputs.num_models, t)
        refs = ReferenceSignals(
            values=values[others],
            member=outputs.member[others],
            labels=outputs.labels,
            population=pop[others] if needs_pop else None,
            population_labels=outputs.population_labels if needs_pop else None,
        )
    target = TargetSignals(
        values=values[t],
        labels=outputs.labels,
        population=pop[t] if needs_pop else None,
        population_labels=outputs.population_labels if needs_pop else None,
    )
    return attack.clone().fit(refs).score(target)


def _score_query_attack(
    attack: QueryAttack,
    outputs: ModelOutputs,
    models: Sequence[Target] | None,
    data: QueryData | None,
    t: int,
) -> tuple[np.ndarray, int]:
    if models is None or data is None:
        raise DataError(
            f"attack {attack.name!r} queries models itself; it needs the models and the "
            "samples, which precomputed outputs do not provide"
        )
    others = _others(outputs.num_models, t)
    refs = None
    if attack.references != "none":
        refs = QueryReferences([models[i] for i in others], outputs.member[others], data)
    fitted = attack.clone().fit(refs)
    view = restrict(models[t], attack.threat_model)
    return fitted.score(view, data), view.queries


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``logits (N, C)`` (the unmodified query) against ``labels``."""
    return float((np.argmax(logits, axis=-1) == labels).mean()) if len(labels) else float("nan")
