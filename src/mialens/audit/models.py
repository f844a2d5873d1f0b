"""Obtain the audit's models and their logits: from the cache, or by training them.

Each model is identified by a hash of everything that determines its weights (see
:mod:`mialens.models.store`); a model found in the store is not trained again and
logits already computed on the same query set are not recomputed, so an interrupted
audit resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mialens.audit.executor import ExecutorConfig, map_models
from mialens.augment import Transform
from mialens.data.dataset import Dataset
from mialens.errors import CacheError
from mialens.models.architectures import ModelConfig, build_model
from mialens.models.store import ModelStore, spec_key
from mialens.models.training import TrainConfig, train_model
from mialens.signals.queries import collect_logits
from mialens.targets.adapters import TorchTarget

log = logging.getLogger(__name__)


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for arr in arrays:
        h.update(f"{arr.shape}{arr.dtype}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class TrainingPlan:
    """How to train model ``k`` of the audit: data, recipe and seeds."""

    dataset: Dataset
    model: ModelConfig
    train: TrainConfig
    train_positions: list[np.ndarray]
    validation_positions: np.ndarray
    seeds: list[int]

    def spec(self, k: int) -> dict[str, Any]:
        """Everything that determines model ``k``'s weights (its store key is a hash of it)."""
        uses_val = self.train.early_stopping is not None
        return {
            "data": self.dataset.fingerprint,
            "train_positions": _digest(self.train_positions[k]),
            "validation_positions": _digest(self.validation_positions) if uses_val else None,
            "input_shape": list(self.dataset.input_shape),
            "num_classes": self.dataset.num_classes,
            "model": self.model.model_dump(mode="json"),
            "train": self.train.model_dump(mode="json"),
            "seed": self.seeds[k],
        }

    def build(self):
        return build_model(
            self.model, self.dataset.input_shape, self.dataset.num_classes, self.train.dropout
        )

    def trainer(self, device: str = "cpu") -> Callable[[np.ndarray, np.ndarray, int], TorchTarget]:
        """The audit's recipe as a function ``(x, y, seed) -> queryable model``, for
        attacks that train shadow models of their own (without early stopping: the
        audit's validation split is not the adversary's)."""
        recipe = self.train.model_copy(update={"early_stopping": None})

        def train(x: np.ndarray, y: np.ndarray, seed: int) -> TorchTarget:
            result = train_model(self.build, x, y, recipe, seed, device=device)
            model = self.build().to(device)
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
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Logits ``(K, len(query_positions), len(transforms), C)`` of every planned model.

    Returns the logits and one record per model (store key, whether it was cached,
    epochs, seconds, epsilon).
    """
    k_models = len(plan.train_positions)
    qkey = query_key(plan.dataset, query_positions, transforms)
    shape = (len(query_positions), len(transforms), plan.dataset.num_classes)

    def task(k: int) -> tuple[np.ndarray, dict[str, Any]]:
        key = spec_key(plan.spec(k))
        cached = store.load_array(key, qkey) if store.has(key) else None
        if cached is not None and cached.shape == shape:
            return cached, {**_summary(store.manifest(key)), "model": k, "key": key, "cached": True}
        model, record = _load_or_train(plan, store, k, key, device)
        x_query = plan.dataset.x[query_positions]
        out = collect_logits(TorchTarget(model, plan.dataset.num_classes), x_query, transforms)
        store.save_array(key, qkey, out)
        return out, record

    done = map_models(
        task,
        range(k_models),
        executor or ExecutorConfig(),
        on_done=(lambda k, r: on_model(k, r[1])) if on_model else None,
    )
    return np.stack([out for out, _ in done]), [record for _, record in done]


def load_models(plan: TrainingPlan, store: ModelStore, device: str = "cpu") -> list[TorchTarget]:
    """Every planned model as a queryable target (trained first if not in the store)."""
    targets = []
    for k in range(len(plan.train_positions)):
        model, _ = _load_or_train(plan, store, k, spec_key(plan.spec(k)), device)
        targets.append(TorchTarget(model, plan.dataset.num_classes))
    return targets


def _summary(manifest: dict[str, Any]) -> dict[str, Any]:
    keys = ("epochs_run", "best_epoch", "epsilon", "seconds")
    return {k: manifest.get("training", {}).get(k) for k in keys}


def _load_or_train(plan: TrainingPlan, store: ModelStore, k: int, key: str, device: str):
    model = plan.build().to(device)
    if store.has(key):
        try:
            state, manifest = store.load(key)
            model.load_state_dict(state)
            return model, {**_summary(manifest), "model": k, "key": key, "cached": True}
        except CacheError as exc:
            log.warning("%s", exc)
            store.discard(key)
    ds = plan.dataset
    train_idx = plan.train_positions[k]
    validation = None
    if plan.train.early_stopping is not None:
        validation = (ds.x[plan.validation_positions], ds.y[plan.validation_positions])
    result = train_model(
        plan.build, ds.x[train_idx], ds.y[train_idx], plan.train, plan.seeds[k], validation, device
    )
    training = {
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "epsilon": result.epsilon,
        "seconds": result.seconds,
        "history": result.history,
    }
    store.save(key, result.state_dict, {"spec": plan.spec(k), "training": training})
    model.load_state_dict(result.state_dict)
    return model, {**_summary({"training": training}), "model": k, "key": key, "cached": False}
