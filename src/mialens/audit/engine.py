"""Scoring engine: run attacks on model outputs, each target against its references.

Input is the logits of ``M`` models on the audit samples (and population samples)
with the models' membership. Each model listed as a target is attacked with all the
other models as references (leave-one-out), which gives every metric a spread over
targets. The engine never trains or queries models.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mialens.attacks.base import Attack, ReferenceSignals, SignalSpec, TargetSignals
from mialens.errors import DataError
from mialens.signals.statistics import compute_signal
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


def clone(attack: Attack) -> Attack:
    """A fresh, unfitted attack with the same parameters."""
    return type(attack)(**attack.params.model_dump())


def score_targets(
    attacks: Sequence[Attack],
    outputs: ModelOutputs,
    targets: Sequence[int],
    on_step: Callable[[], None] | None = None,
) -> dict[str, np.ndarray]:
    """Scores ``(len(targets), N)`` of every attack; references are all non-target models."""
    signals = _Signals(outputs)
    m = outputs.num_models
    scores: dict[str, np.ndarray] = {}
    for attack in attacks:
        needs_pop = attack.uses_population
        if needs_pop and outputs.population_logits is None:
            raise DataError(f"attack {attack.name!r} needs population data; none was given")
        values, pop = signals.get(attack.signal())
        rows = []
        for t in targets:
            fitted = clone(attack)
            refs = None
            if attack.references != "none":
                others = np.array([i for i in range(m) if i != t], dtype=np.int64)
                refs = ReferenceSignals(
                    values=values[others],
                    member=outputs.member[others],
                    labels=outputs.labels,
                    population=pop[others] if needs_pop else None,
                    population_labels=outputs.population_labels if needs_pop else None,
                )
            fitted.fit(refs)
            target = TargetSignals(
                values=values[t],
                labels=outputs.labels,
                population=pop[t] if needs_pop else None,
                population_labels=outputs.population_labels if needs_pop else None,
            )
            rows.append(fitted.score(target))
            if on_step is not None:
                on_step()
        scores[attack.name] = np.stack(rows)
    return scores


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``logits (N, C)`` (the unmodified query) against ``labels``."""
    return float((np.argmax(logits, axis=-1) == labels).mean()) if len(labels) else float("nan")
