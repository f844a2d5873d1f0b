"""Scoring engine: run attacks on model outputs, each target against its references.

Input is the logits of ``M`` models on the audit samples (and population samples)
with the models' membership, or their signals in a
:class:`~mialens.signals.store.SignalStore`, and, for attacks that query models
themselves, the models as queryable targets. Each model listed as a target is attacked
with all the other models as references (leave-one-out), which gives every metric a
spread over targets. Attacks that fit per sample are scored in chunks of samples, so
memory stays bounded for any number of samples. Signal attacks get the signals of all
models and fit each target with :meth:`~mialens.attacks.base.SignalAttack.fit_leaving_out`:
those whose fit is per-sample sums (LiRA, RMIA) subtract the target from sums over all
models, ``O(M N)`` per chunk for all targets together instead of ``O(M N)`` per target.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mialens.attacks.base import (
    Attack,
    ModelSignals,
    QueryAttack,
    QueryData,
    QueryReferences,
    SignalAttack,
)
from mialens.errors import DataError
from mialens.signals.statistics import SignalSpec, compute_signal
from mialens.signals.store import SAMPLE_BLOCK, SignalStore
from mialens.targets.adapters import Target, restrict
from mialens.validation import check_finite, check_labels, check_member_mask

log = logging.getLogger(__name__)

_CHUNK_BYTES = 64 * 2**20  # float64 signals (or logits) of all models per chunk


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


class _LogitSignals:
    """Signals computed on demand from in-memory logits, in float64, chunk by chunk."""

    def __init__(self, outputs: ModelOutputs) -> None:
        self.outputs = outputs
        self.member = outputs.member
        self.labels = outputs.labels
        self.population_labels = outputs.population_labels
        self.has_population = outputs.population_logits is not None
        self.num_models, self.num_samples, self.num_queries = outputs.logits.shape[:3]
        self._population: dict[SignalSpec, np.ndarray] = {}

    def values(self, spec: SignalSpec, start: int = 0, stop: int | None = None) -> np.ndarray:
        labels = self.labels[None, start:stop, None]
        return compute_signal(spec.name, self.outputs.logits[:, start:stop], labels, **spec.kwargs)

    def population(self, spec: SignalSpec) -> np.ndarray:
        if spec not in self._population:
            labels = self.population_labels[None, :, None]
            logits = self.outputs.population_logits
            self._population[spec] = compute_signal(spec.name, logits, labels, **spec.kwargs)
        return self._population[spec]


class _ChunkCache:
    """The signals of the current chunk of samples, computed once for all attacks."""

    def __init__(self, source) -> None:
        self.source = source
        self.span: tuple[int, int] | None = None
        self.cache: dict[SignalSpec, np.ndarray] = {}

    def get(self, spec: SignalSpec, start: int, stop: int) -> np.ndarray:
        if self.span != (start, stop):
            self.span, self.cache = (start, stop), {}
        if spec not in self.cache:
            self.cache[spec] = self.source.values(spec, start, stop)
        return self.cache[spec]


@dataclass
class Scores:
    """Scores ``(T, N)`` of every attack, and the target queries per sample each made."""

    scores: dict[str, np.ndarray]
    queries_per_sample: dict[str, float]
    extras: dict[str, list[dict]] = field(default_factory=dict)
    """Per attack, the fitted attack's diagnostics (``Attack.extra()``) for each target."""


def chunk_samples(
    num_models: int, num_samples: int, values_per_sample: int, budget: int = _CHUNK_BYTES
) -> int:
    """Samples per chunk: a multiple of :data:`SAMPLE_BLOCK` whose float64 array of
    ``num_models x values_per_sample`` values per sample takes about ``budget`` bytes."""
    per_sample = 8 * num_models * max(values_per_sample, 1)
    blocks = max(1, budget // (per_sample * SAMPLE_BLOCK))
    return min(blocks * SAMPLE_BLOCK, -(-num_samples // SAMPLE_BLOCK) * SAMPLE_BLOCK)


def score_targets(
    attacks: Sequence[Attack],
    outputs: ModelOutputs | SignalStore,
    targets: Sequence[int],
    models: Sequence[Target] | None = None,
    data: QueryData | None = None,
    on_step: Callable[[], None] | None = None,
    chunk_size: int | None = None,
    scores_dir: str | os.PathLike | None = None,
) -> Scores:
    """Score every attack against each target; references are all non-target models.

    What an attack gets is decided by its declaration, ``attack.needs``
    (:class:`~mialens.attacks.base.Needs`). Signal attacks read ``outputs``: in-memory
    logits (:class:`ModelOutputs`, signals computed in float64) or a
    :class:`~mialens.signals.store.SignalStore` on disk. Those declaring
    ``chunking="samples"`` are fitted and scored on chunks of ``chunk_size`` samples (a
    multiple of :data:`~mialens.signals.store.SAMPLE_BLOCK`; default: about 64 MB of
    signals per chunk), so memory stays bounded however many samples there are; one
    declaring ``summary_pass`` (LiRA's pooled variance) gets a first pass over the
    chunks. Others (class thresholds over all samples) are fitted on all samples at
    once. Scores never depend on the chunk size. With ``scores_dir``, the scores of
    chunked attacks are written there (``<attack>.npy``, float64) chunk by chunk and
    returned memory-mapped, so that not even the ``T x N`` scores need to fit in memory.
    Query attacks need ``models`` (queryable, in the order of the outputs) and the
    samples as ``data``; each is fitted, prepared (``needs.target_step``) and scored per
    target, through a view of the target restricted to its threat model that counts
    every query.
    """
    source = outputs if isinstance(outputs, SignalStore) else _LogitSignals(outputs)
    chunks = _chunks(source, outputs, chunk_size)
    cache = _ChunkCache(source)
    scored = Scores({}, {}, {})
    for attack in attacks:
        if attack.needs.input == "signals":
            out = None if scores_dir is None else Path(scores_dir) / f"{attack.name}.npy"
            rows, per_sample, extras = _score_signal_attack(
                attack, source, cache, targets, chunks, on_step, out
            )
        else:
            if not isinstance(outputs, ModelOutputs):
                raise DataError(f"attack {attack.name!r} queries models; it needs ModelOutputs")
            rows, per_sample, extras = _score_query_attack(
                attack, outputs, models, data, targets, on_step
            )
        scored.scores[attack.name] = rows
        scored.queries_per_sample[attack.name] = per_sample
        if any(extras):
            scored.extras[attack.name] = extras
    return scored


def _chunks(source, outputs, chunk_size: int | None) -> list[tuple[int, int]]:
    """The ``(start, stop)`` spans of samples that chunked attacks are scored on."""
    if chunk_size is None:
        per_sample = source.num_queries
        if isinstance(outputs, ModelOutputs):
            per_sample *= outputs.logits.shape[3]  # the logits chunk is the larger array
        chunk_size = chunk_samples(source.num_models, source.num_samples, per_sample)
    elif chunk_size <= 0 or chunk_size % SAMPLE_BLOCK:
        raise DataError(f"chunk_size must be a positive multiple of {SAMPLE_BLOCK}")
    n = source.num_samples
    return [(i, min(i + chunk_size, n)) for i in range(0, n, chunk_size)]


def _others(m: int, t: int) -> np.ndarray:
    return np.array([i for i in range(m) if i != t], dtype=np.int64)


def _score_signal_attack(
    attack: SignalAttack, source, cache, targets, chunks, on_step, out
) -> tuple[np.ndarray, float, list[dict]]:
    """Scores ``(T, N)``, queries per sample and per-target diagnostics of one attack."""
    if attack.needs.population and not source.has_population:
        raise DataError(f"attack {attack.name!r} needs population data; none was given")
    pop = source.population(attack.signal()) if attack.needs.population else None
    if attack.needs.chunking == "samples":
        rows, extras = _score_in_chunks(attack, source, cache, targets, chunks, on_step, out, pop)
    else:
        rows, extras = _score_whole(attack, source, targets, on_step, pop)
    return rows, float(source.num_queries if attack.needs.all_queries else 1), extras


def _models(source, values: np.ndarray, span: slice, population) -> ModelSignals:
    """The signals of every model on the samples ``span``: each target is fitted on the
    others (:meth:`~mialens.attacks.base.SignalAttack.fit_leaving_out`)."""
    return ModelSignals(
        values=values,
        member=source.member[:, span],
        labels=source.labels[span],
        population=population,
        population_labels=None if population is None else source.population_labels,
    )


def _score_whole(attack: SignalAttack, source, targets, on_step, pop) -> tuple[np.ndarray, list]:
    models = _models(source, source.values(attack.signal()), slice(None), pop)
    rows, extras = [], []
    for t in targets:
        fitted = attack.clone().fit_leaving_out(models, t)
        rows.append(fitted.score(models.target(t)))
        extras.append(fitted.extra())
        if on_step is not None:
            on_step()
    return np.stack(rows), extras


def _summary_pass(attack: SignalAttack, fitted: dict, source, cache, chunks, pop) -> None:
    """``needs.summary_pass``: every chunk's summary, handed to each target's attack."""
    spec = attack.signal()
    summaries: dict[int, list] = {t: [] for t in fitted}
    for start, stop in chunks:
        models = _models(source, cache.get(spec, start, stop), slice(start, stop), pop)
        for t in fitted:
            summaries[t].append(fitted[t].chunk_summary_leaving_out(models, t))
    for t in fitted:
        fitted[t].use_summaries(summaries[t])


def _score_in_chunks(attack, source, cache, targets, chunks, on_step, out, pop) -> tuple:
    spec = attack.signal()
    fitted = {t: attack.clone() for t in targets}
    if attack.needs.summary_pass and len(chunks) > 1:  # one chunk: fit computes them
        _summary_pass(attack, fitted, source, cache, chunks, pop)
    shape = (len(targets), source.num_samples)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        np.lib.format.open_memmap(out, "w+", np.float64, shape).flush()
    rows = np.empty(shape) if out is None else None
    for start, stop in chunks:
        models = _models(source, cache.get(spec, start, stop), slice(start, stop), pop)
        block = np.empty((len(targets), stop - start))
        for i, t in enumerate(targets):
            block[i] = fitted[t].fit_leaving_out(models, t).score(models.target(t))
            if on_step is not None and stop == source.num_samples:
                on_step()
        if rows is not None:
            rows[:, start:stop] = block
        else:  # map the file for this write only, so its pages do not stay resident
            mapped = np.load(out, mmap_mode="r+")
            mapped[:, start:stop] = block
            mapped.flush()
            del mapped
    extras = [fitted[t].extra() for t in targets]
    return (rows if rows is not None else np.load(out, mmap_mode="r")), extras


def _score_query_attack(
    attack: QueryAttack,
    outputs: ModelOutputs,
    models: Sequence[Target] | None,
    data: QueryData | None,
    targets: Sequence[int],
    on_step: Callable[[], None] | None,
) -> tuple[np.ndarray, float, list[dict]]:
    """Scores ``(T, N)``, mean target queries per sample and per-target diagnostics."""
    if models is None or data is None:
        raise DataError(
            f"attack {attack.name!r} queries models itself; it needs the models and the "
            "samples, which precomputed outputs do not provide"
        )
    rows, counts, extras = [], [], []
    for t in targets:
        others = _others(outputs.num_models, t)
        refs = None
        if attack.needs.references != "none":
            refs = QueryReferences([models[i] for i in others], outputs.member[others], data)
        fitted = attack.clone().fit(refs)
        view = restrict(models[t], attack.threat_model)  # counts every query, prepare's too
        if attack.needs.target_step:
            fitted.prepare(view, data)
        rows.append(fitted.score(view, data))
        counts.append(view.queries / len(outputs.labels))
        extras.append(fitted.extra())
        if on_step is not None:
            on_step()
    return np.stack(rows), float(np.mean(counts)), extras


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``logits (N, C)`` (the unmodified query) against ``labels``."""
    return float((np.argmax(logits, axis=-1) == labels).mean()) if len(labels) else float("nan")
