"""Obtain the audit's models and their logits: from the cache, or by training them.

Each model is identified by a hash of everything that determines its weights (see
:mod:`mialens.models.store`); a model found in the store is not trained again and
logits already computed on the same query set are not recomputed, so an interrupted
audit resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mialens.audit.executor import ExecutorConfig, map_tasks
from mialens.augment import Transform
from mialens.data.dataset import Dataset
from mialens.errors import CacheError
from mialens.models.estimators import fit_estimator
from mialens.models.factory import code_identity
from mialens.models.model_config import ModelConfig
from mialens.models.recipe import TrainConfig
from mialens.models.store import ModelStore, spec_key
from mialens.signals.queries import collect_logits
from mialens.targets.adapters import SklearnTarget, Target, TorchTarget

if TYPE_CHECKING:  # PyTorch loads only to train models or compute their logits
    from mialens.models.training import TrainResult

log = logging.getLogger(__name__)


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for arr in arrays:
        h.update(f"{arr.shape}{arr.dtype}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class TrainingPlan:
    """How to train model ``k`` of the audit: data, recipe and seeds.

    ``validation_positions`` serve early stopping and, as the defender's reference set of
    non-members, adversarial regularisation. ``sample_weights``/``sample_smoothing``/
    ``sample_clip_norms`` (per model, aligned with its training positions) and
    ``clip_noise`` come from sample-aware defences (see
    :func:`mialens.models.training.train_model`).
    """

    dataset: Dataset
    model: ModelConfig
    train: TrainConfig
    train_positions: list[np.ndarray]
    validation_positions: np.ndarray
    seeds: list[int]
    sample_weights: list[np.ndarray] | None = None
    sample_smoothing: list[np.ndarray] | None = None
    sample_clip_norms: list[np.ndarray] | None = None
    clip_noise: float = 0.0

    @property
    def uses_validation(self) -> bool:
        return (
            self.train.early_stopping is not None
            or self.train.adversarial_regularization is not None
        )

    @property
    def per_sample(self) -> bool:
        """Whether some model has per-sample loss weights, smoothing or clipping."""
        return any(
            v is not None
            for v in (self.sample_weights, self.sample_smoothing, self.sample_clip_norms)
        )

    def spec(self, k: int) -> dict[str, Any]:
        """Everything that determines model ``k``'s weights (its store key is a hash of it)."""
        spec = {
            "data": self.dataset.fingerprint,
            "train_positions": _digest(self.train_positions[k]),
            "validation_positions": _digest(self.validation_positions)
            if self.uses_validation
            else None,
            "input_shape": list(self.dataset.input_shape),
            "num_classes": self.dataset.num_classes,
            "model": self.model.model_dump(mode="json"),
            "train": self.train.model_dump(mode="json"),
            "seed": self.seeds[k],
        }
        if self.model.kind != "built-in":  # the user's code: its path and source digest
            key = f"model.{self.model.kind}"
            spec["code"] = code_identity(self.model.factory or self.model.estimator, key)
        for name, values in (
            ("sample_weights", self.sample_weights),
            ("sample_smoothing", self.sample_smoothing),
            ("sample_clip_norms", self.sample_clip_norms),
        ):
            if values is not None:
                spec[name] = _digest(np.asarray(values[k], dtype=np.float64))
        if self.sample_clip_norms is not None:
            spec["clip_noise"] = self.clip_noise
        return spec

    def build(self):
        from mialens.models.architectures import build_model

        return build_model(
            self.model, self.dataset.input_shape, self.dataset.num_classes, self.train.dropout
        )

    def fitted_estimator(self, k: int) -> SklearnTarget:
        """Estimator ``k`` fitted on its training positions (estimators are refitted, not
        stored: see :mod:`mialens.models.estimators`)."""
        idx = self.train_positions[k]
        fitted = fit_estimator(self.model, self.dataset.x[idx], self.dataset.y[idx], self.seeds[k])
        return SklearnTarget(fitted, self.dataset.num_classes)

    def trainer(self, device: str = "cpu") -> Callable[[np.ndarray, np.ndarray, int], Target]:
        """The audit's recipe as a function ``(x, y, seed) -> queryable model``, for
        attacks that train shadow models of their own. The audit's validation split is
        not the adversary's: early stopping is dropped, and under adversarial
        regularisation a seeded fifth of the shadow data becomes the shadow's own
        reference non-members (the adaptive adversary mirrors the defence)."""
        if self.model.kind == "estimator":
            return lambda x, y, seed: SklearnTarget(
                fit_estimator(self.model, x, y, seed), self.dataset.num_classes
            )
        from mialens.models.loop import module_to_device
        from mialens.models.training import train_model

        recipe = self.train.model_copy(update={"early_stopping": None})
        needs_reference = recipe.adversarial_regularization is not None

        def train(x: np.ndarray, y: np.ndarray, seed: int) -> TorchTarget:
            reference = None
            if needs_reference:
                order = np.random.default_rng(seed).permutation(len(x))
                held, kept = order[: max(1, len(x) // 5)], order[max(1, len(x) // 5) :]
                reference, x, y = (x[held], y[held]), x[kept], y[kept]
            result = train_model(self.build, x, y, recipe, seed, device=device, reference=reference)
            model = module_to_device(self.build(), device)
            model.load_state_dict(result.state_dict)
            return TorchTarget(model, self.dataset.num_classes)

        return train


def query_key(dataset: Dataset, positions: np.ndarray, transforms: list[Transform]) -> str:
    """Name of the cached logits of a model on ``positions`` under ``transforms``."""
    views = ",".join(f"{t.flip:d}{t.dy:+d}{t.dx:+d}" for t in transforms)
    text = np.frombuffer(f"{dataset.fingerprint}|{views}".encode(), np.uint8)
    return "logits-" + _digest(text, positions)[:24]


def models_logits(
    plan: TrainingPlan,
    store: ModelStore,
    query_positions: np.ndarray,
    transforms: list[Transform],
    device: str = "cpu",
    executor: ExecutorConfig | None = None,
    on_model: Callable[[int, dict[str, Any]], None] | None = None,
    on_epoch: Callable[[list[int], int], None] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Logits ``(K, len(query_positions), len(transforms), C)`` of every planned model.

    Returns the logits and one record per model (store key, whether it was cached,
    epochs, seconds, epsilon, and the size of the batched group it was trained in).
    Models are processed in groups (see :func:`model_groups`), each group a task of the
    configured executor. ``on_model(k, record)`` is called as each model is done;
    ``on_epoch(models, epoch)`` after every training epoch of ``models`` (local executor
    only: Ray workers report per group, through ``on_model``).
    """
    executor = executor or ExecutorConfig()
    cached = _all_cached(plan, store, query_positions, transforms)
    if cached is not None:  # nothing to train or compute: no grouping (which builds a model)
        for k, (_, record) in enumerate(cached):
            if on_model is not None:
                on_model(k, record)
        return np.stack([out for out, _ in cached]), [record for _, record in cached]
    if plan.model.kind == "estimator":
        groups, task = [[k] for k in range(len(plan.train_positions))], _estimator_task
    else:
        groups, task = model_groups(plan, executor, device), _group_task
    batched = max(map(len, groups)) > 1  # then even a group of one trains as an ensemble
    hook = on_epoch if executor.kind == "local" else None
    context = _GroupContext(plan, store, query_positions, transforms, device, batched, hook)

    def done(group: list[int], results: list[tuple[np.ndarray, dict[str, Any]]]) -> None:
        if on_model is not None:
            for k, (_, record) in zip(group, results, strict=True):
                on_model(k, record)

    by_group = map_tasks(task, context, groups, executor, on_done=done)
    outputs: dict[int, tuple[np.ndarray, dict[str, Any]]] = {}
    for group, results in zip(groups, by_group, strict=True):
        outputs.update(zip(group, results, strict=True))
    ordered = [outputs[k] for k in range(len(plan.train_positions))]
    return np.stack([out for out, _ in ordered]), [record for _, record in ordered]


def _logits_shape(
    plan: TrainingPlan, query_positions: np.ndarray, transforms: list[Transform]
) -> tuple[int, int, int]:
    """The shape of one model's logits on ``query_positions`` under ``transforms``."""
    return len(query_positions), len(transforms), plan.dataset.num_classes


def _cached_entry(
    store: ModelStore, key: str, qkey: str, shape: tuple[int, ...], k: int
) -> tuple[np.ndarray, dict[str, Any]] | None:
    """Model ``k``'s cached logits ``qkey`` and its record, if the store holds them."""
    cached = store.load_array(key, qkey) if store.has(key) else None
    if cached is None or cached.shape != shape:
        return None
    return cached, {**_summary(store.manifest(key)), "model": k, "key": key, "cached": True}


def _all_cached(
    plan: TrainingPlan, store: ModelStore, query_positions: np.ndarray, transforms: list[Transform]
) -> list[tuple[np.ndarray, dict[str, Any]]] | None:
    """Every planned model's cached logits and record, when the store holds them all
    (the same arrays and records the group tasks would read), else None."""
    qkey = query_key(plan.dataset, query_positions, transforms)
    shape = _logits_shape(plan, query_positions, transforms)
    entries = []
    for k in range(len(plan.train_positions)):
        entry = _cached_entry(store, spec_key(plan.spec(k)), qkey, shape, k)
        if entry is None:
            return None
        entries.append(entry)
    return entries


def model_groups(plan: TrainingPlan, executor: ExecutorConfig, device: str) -> list[list[int]]:
    """The planned models split into consecutive groups trained together (singletons
    when the recipe, the architecture or ``executor.ensemble`` rule batching out)."""
    from mialens.models.ensemble import group_size

    k_models = len(plan.train_positions)
    size, reason = group_size(
        plan.build,
        plan.train,
        tuple(plan.dataset.input_shape),
        k_models,
        device,
        executor.ensemble,
        executor.ensemble_size,
        plan.per_sample,
    )
    if size > 1:
        log.info("training %d models as batched ensembles: %s", k_models, reason)
    elif executor.ensemble == "on" or (executor.ensemble == "auto" and k_models > 1):
        log.info("training models one by one: %s", reason)
    return [list(range(i, min(i + size, k_models))) for i in range(0, k_models, size)]


@dataclass(frozen=True)
class _GroupContext:
    """What every group task shares (sent once to each Ray worker)."""

    plan: TrainingPlan
    store: ModelStore
    query_positions: np.ndarray
    transforms: list[Transform]
    device: str
    batched: bool
    on_epoch: Callable[[list[int], int], None] | None = None


def _group_task(ctx: _GroupContext, group: list[int]) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """Logits and records of the models in ``group``: cached logits are reused; the
    others come from cached or newly trained weights. A batched group is the unit of
    work: it is trained, and its logits computed, for all its models together whenever
    any of them needs it, so that no number depends on what happened to be cached."""
    plan, store = ctx.plan, ctx.store
    qkey = query_key(plan.dataset, ctx.query_positions, ctx.transforms)
    shape = _logits_shape(plan, ctx.query_positions, ctx.transforms)
    keys = {k: spec_key(plan.spec(k)) for k in group}
    results: dict[int, tuple[np.ndarray, dict[str, Any]]] = {}
    for k in group:
        entry = _cached_entry(store, keys[k], qkey, shape, k)
        if entry is not None:
            results[k] = entry
    todo = [k for k in group if k not in results]
    if not todo:
        return [results[k] for k in group]
    from mialens.models.ensemble import ensemble_logits

    needed = group if ctx.batched else todo
    states, records = _load_or_train_many(
        plan, store, needed, keys, ctx.device, ctx.batched, ctx.on_epoch
    )
    x_query = plan.dataset.x[ctx.query_positions]
    if ctx.batched:
        stacked = [states[k] for k in needed]
        out = ensemble_logits(plan.build, stacked, x_query, ctx.transforms, ctx.device)
        logits = dict(zip(needed, out, strict=True))
    else:
        from mialens.models.loop import module_to_device

        model = module_to_device(plan.build(), ctx.device)
        model.load_state_dict(states[todo[0]])
        target = TorchTarget(model, plan.dataset.num_classes)
        logits = {todo[0]: collect_logits(target, x_query, ctx.transforms)}
    for k in todo:
        store.save_array(keys[k], qkey, logits[k])
        results[k] = (logits[k], records[k])
    return [results[k] for k in group]


def load_models(
    plan: TrainingPlan,
    store: ModelStore,
    device: str = "cpu",
    executor: ExecutorConfig | None = None,
) -> list[Target]:
    """Every planned model as a queryable target. A model missing from the store (or
    damaged there) is trained in the groups :func:`models_logits` trains it in under the
    same ``executor`` configuration, so that it gets the same weights. Estimators are
    refitted from their seeds (they are not stored)."""
    if plan.model.kind == "estimator":
        log.info(
            "refitting the %d estimators for the attacks that query them (estimators "
            "are not stored: saving one needs pickle)",
            len(plan.train_positions),
        )
        return [plan.fitted_estimator(k) for k in range(len(plan.train_positions))]
    keys = {k: spec_key(plan.spec(k)) for k in range(len(plan.train_positions))}
    states = {}
    for k, key in keys.items():
        entry = _load_cached(store, key)
        if entry is not None:
            states[k] = entry[0]
    if len(states) < len(keys):
        groups = model_groups(plan, executor or ExecutorConfig(), device)
        batched = max(map(len, groups)) > 1
        for group in groups:
            if any(k not in states for k in group):
                states.update(_load_or_train_many(plan, store, group, keys, device, batched)[0])
    from mialens.models.loop import module_to_device

    targets = []
    for k in keys:
        model = module_to_device(plan.build(), device)
        model.load_state_dict(states[k])
        targets.append(TorchTarget(model, plan.dataset.num_classes))
    return targets


def _estimator_task(
    ctx: _GroupContext, group: list[int]
) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """Logits (log-probabilities) and records of the estimators in ``group``: cached
    predictions are reused; the others are fitted and their predictions cached (with a
    manifest, without weights)."""
    plan, store = ctx.plan, ctx.store
    qkey = query_key(plan.dataset, ctx.query_positions, ctx.transforms)
    shape = _logits_shape(plan, ctx.query_positions, ctx.transforms)
    results = []
    for k in group:
        key = spec_key(plan.spec(k))
        entry = _cached_entry(store, key, qkey, shape, k)
        if entry is not None:
            results.append(entry)
            continue
        start = time.perf_counter()
        target = plan.fitted_estimator(k)
        training = {"seconds": time.perf_counter() - start, "ensemble": 1}
        logits = collect_logits(target, plan.dataset.x[ctx.query_positions], ctx.transforms)
        if not store.has(key):
            store.save(key, None, {"spec": plan.spec(k), "training": training})
        store.save_array(key, qkey, logits)
        record = {**_summary({"training": training}), "model": k, "key": key, "cached": False}
        results.append((logits, record))
    return results


def _summary(manifest: dict[str, Any]) -> dict[str, Any]:
    keys = ("epochs_run", "best_epoch", "epsilon", "seconds", "ensemble")
    return {k: manifest.get("training", {}).get(k) for k in keys}


def _validation(plan: TrainingPlan) -> tuple[np.ndarray, np.ndarray] | None:
    if not plan.uses_validation:
        return None
    return plan.dataset.x[plan.validation_positions], plan.dataset.y[plan.validation_positions]


def _load_cached(store: ModelStore, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Weights and manifest of ``key`` if stored and intact (a corrupt entry is moved aside)."""
    if not store.has(key):
        return None
    try:
        return store.load(key)
    except CacheError as exc:
        log.warning("%s", exc)
        store.discard(key)
        return None


def _load_or_train_many(
    plan: TrainingPlan,
    store: ModelStore,
    models: list[int],
    keys: dict[int, str],
    device: str,
    batched: bool,
    on_epoch: Callable[[list[int], int], None] | None = None,
) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """Weights and records of ``models``: from the store, else trained and stored. When
    ``batched`` and any model must be trained, all of ``models`` are trained together as
    one ensemble (the cached ones again, bit for bit, but kept from the store), so that
    a model's weights never depend on which others happened to be cached."""
    states, records = {}, {}
    for k in models:
        entry = _load_cached(store, keys[k])
        if entry is not None:
            states[k] = entry[0]
            records[k] = {**_summary(entry[1]), "model": k, "key": keys[k], "cached": True}
    missing = [k for k in models if k not in states]
    if not missing:
        return states, records
    from mialens.models.ensemble import train_ensemble

    ds = plan.dataset
    if batched:
        trained = train_ensemble(
            plan.build,
            ds.x,
            ds.y,
            [plan.train_positions[k] for k in models],
            plan.train,
            [plan.seeds[k] for k in models],
            _validation(plan),
            device,
            None if on_epoch is None else lambda epoch: on_epoch(models, epoch),
        )
        results = dict(zip(models, trained, strict=True))
    else:
        results = {k: train_one(plan, k, device, on_epoch) for k in missing}
    for k in missing:
        result = results[k]
        training = {
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "epsilon": result.epsilon,
            "seconds": result.seconds,
            "ensemble": len(models) if batched else 1,
            "history": result.history,
        }
        store.save(keys[k], result.state_dict, {"spec": plan.spec(k), "training": training})
        states[k] = result.state_dict
        records[k] = {**_summary({"training": training}), "model": k, "key": keys[k]}
        records[k]["cached"] = False
    return states, records


def train_one(
    plan: TrainingPlan,
    k: int,
    device: str = "cpu",
    on_epoch: Callable[[list[int], int], None] | None = None,
) -> TrainResult:
    """Train model ``k`` of the plan (one by one, no cache); ``on_epoch([k], epoch)``
    after every epoch."""
    from mialens.models.training import train_model

    ds = plan.dataset
    idx = plan.train_positions[k]
    held_out = _validation(plan)
    return train_model(
        plan.build,
        ds.x[idx],
        ds.y[idx],
        plan.train,
        plan.seeds[k],
        held_out if plan.train.early_stopping is not None else None,
        device,
        reference=held_out if plan.train.adversarial_regularization is not None else None,
        sample_weight=None if plan.sample_weights is None else plan.sample_weights[k],
        sample_smoothing=None if plan.sample_smoothing is None else plan.sample_smoothing[k],
        sample_clip_norm=None if plan.sample_clip_norms is None else plan.sample_clip_norms[k],
        clip_noise=plan.clip_noise,
        on_epoch=None if on_epoch is None else lambda epoch, _model: on_epoch([k], epoch),
    )
