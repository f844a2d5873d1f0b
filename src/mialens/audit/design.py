"""The design of an audit: what its configuration derives before any training.

:func:`prepare_audit` loads the data and derives the split, the models' membership
(complementary halves of the pool), the training plan, the model store and the query
views; :class:`AuditSetup` then turns the models' logits into the scoring engine's
inputs and the scores into an :class:`~mialens.audit.results.AuditResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mialens.attacks.base import Attack, QueryData
from mialens.audit.budget import check_design_cost, check_training_time
from mialens.audit.canaries import canary_metrics, inject_canaries
from mialens.audit.engine import ModelOutputs, Scores, accuracy
from mialens.audit.results import AuditResult, attack_info
from mialens.audit.settings import AuditSpec
from mialens.audit.training_plan import TrainingPlan
from mialens.augment import Transform
from mialens.data.catalog import dataset_info, load_dataset
from mialens.data.dataset import Dataset
from mialens.errors import ConfigError
from mialens.folders import writable_folder
from mialens.models.factory import check_factory
from mialens.models.store import ModelStore, default_cache_dir, spec_key
from mialens.seeding import int_seed
from mialens.signals.queries import QueryConfig, transforms_for
from mialens.splits import Split, keep_mask, make_split


@dataclass(frozen=True)
class AuditSetup:
    """Everything an audit derives from its configuration before training: the data,
    its split, the models' membership, the training plan, the store and the queries;
    ``canaries`` marks the pool samples replaced by canaries (None without canaries)."""

    config: AuditSpec
    dataset: Dataset
    split: Split
    keep: np.ndarray
    plan: TrainingPlan
    store: ModelStore
    transforms: list[Transform]
    canaries: np.ndarray | None = None

    @property
    def query_positions(self) -> np.ndarray:
        """Dataset positions whose logits every model computes: pool, then test set."""
        return np.concatenate([self.split.pool, self.split.test])

    def query_data(self) -> QueryData:
        """The pool and population as an adversary holds them, with the audit's recipe,
        for attacks that query models."""
        ds, split, settings = self.dataset, self.split, self.config.audit
        return QueryData(
            x=ds.x[split.pool],
            labels=ds.y[split.pool],
            population_x=ds.x[split.population],
            population_labels=ds.y[split.population],
            train_model=self.plan.trainer(settings.device),
            build_model=None if self.config.model.kind == "estimator" else self.plan.build,
            seed=settings.seed,
        )

    def outputs(self, logits: np.ndarray) -> ModelOutputs:
        """The scoring engine's input from the logits on :attr:`query_positions`: the
        pool with the models' membership, and the population."""
        n_pool = len(self.split.pool)
        population_rows = _positions_in(self.split.test, self.split.population)
        return ModelOutputs(
            logits=logits[:, :n_pool],
            member=self.keep,
            labels=self.dataset.y[self.split.pool],
            population_logits=logits[:, n_pool:][:, population_rows],
            population_labels=self.dataset.y[self.split.population],
        )

    def result(
        self,
        attacks: list[Attack],
        scored: Scores,
        logits: np.ndarray,
        training: list[dict[str, Any]],
        design: dict[str, Any] | None = None,
    ) -> AuditResult:
        """The audit's result: every model attacked as a target, its utility, and
        ``design`` entries added to the recorded design (e.g. a defence's); the metrics
        are computed by :meth:`AuditResult.compute_metrics`."""
        dataset, split, keep = self.dataset, self.split, self.keep
        result = AuditResult(
            sample_ids=dataset.ids[split.pool],
            labels=dataset.y[split.pool],
            members=keep,
            target_models=list(range(keep.shape[0])),
            scores=scored.scores,
            attacks={
                a.name: attack_info(a, scored.queries_per_sample[a.name], scored.extras.get(a.name))
                for a in attacks
            },
            fpr_levels=list(self.config.audit.fpr),
            config=self.config.model_dump(mode="json"),
            design={**self._design(), **(design or {})},
            training=training,
        )
        n_pool = len(split.pool)
        pool, test = logits[:, :n_pool, 0], logits[:, n_pool:, 0]
        labels, test_labels = dataset.y[split.pool], dataset.y[split.test]
        result.set_utility(
            train_accuracy=[accuracy(pool[k, m], labels[m]) for k, m in enumerate(keep)],
            test_accuracy=[accuracy(t, test_labels) for t in test],
            test_source="held-out test set",
        )
        return result

    def canary_metrics(self, result: AuditResult) -> None:
        """Add each attack's metrics on the canaries to ``result.metrics``."""
        for name, scores in result.scores.items():
            result.metrics[name].canaries = canary_metrics(
                scores, self.keep, self.canaries, result.fpr_levels
            )

    def _design(self) -> dict[str, Any]:
        dataset, split, settings = self.dataset, self.split, self.config.audit
        design = {
            "dataset": dataset.name,
            "num_models": settings.num_models,
            "targets": settings.num_models,
            "pool_size": len(split.pool),
            "validation_size": len(split.validation),
            "test_size": len(split.test),
            "population_size": len(split.population),
            "queries_per_sample": len(self.transforms),
            "seed": settings.seed,
            "cache_dir": str(self.store.root.parent),
        }
        if dataset.label_values:
            design["label_values"] = list(dataset.label_values)
        if self.canaries is not None:
            kind, fraction = settings.canaries.kind, settings.canaries.fraction
            design["canaries"] = (
                f"{int(self.canaries.sum())} {kind} ({100 * fraction:g}% of the pool)"
            )
        return design


def _classification_data(config: AuditSpec) -> Dataset:
    """The audited data set, refused before loading when it holds text."""
    if dataset_info(config.dataset.name).modality == "text":
        raise ConfigError(
            f"dataset {config.dataset.name!r} holds text, not features and class labels, so "
            "this classifier audit cannot use it; language models read it through "
            "mialens.data.text and mialens.signals.token_logprobs"
        )
    return load_dataset(config.dataset)


def _check_factory(config: AuditSpec, dataset: Dataset) -> None:
    """A user's factory module must answer logits of the right shape (checked before
    any training)."""
    if config.model.kind != "factory":
        return
    model = config.model
    check_factory(model.factory, model.kwargs, dataset.input_shape, dataset.num_classes)


def prepare_audit(config: AuditSpec) -> AuditSetup:
    """Load the data and derive the split, keep mask, training plan and query views."""
    settings = config.audit
    cache_dir = writable_folder(
        settings.cache_dir or default_cache_dir(),
        "audit.cache_dir" if settings.cache_dir else "the cache folder ($MIALENS_CACHE_DIR)",
    )
    dataset = _classification_data(config)
    split = make_split(
        len(dataset),
        settings.seed,
        settings.pool_size,
        settings.val_size,
        settings.test_size,
        settings.population_size,
        need_validation=config.train.early_stopping is not None
        or config.train.adversarial_regularization is not None,
    )
    queries = settings.queries
    if queries is None:  # query the views the models were trained on
        augment = config.train.augment
        queries = QueryConfig(flip=augment.flip, shift=augment.shift) if augment else QueryConfig()
    transforms = transforms_for(queries, dataset.modality)
    _check_factory(config, dataset)
    check_design_cost(config, dataset, split, len(transforms))
    canaries = None
    if settings.canaries is not None:
        injected, canaries = inject_canaries(dataset, split.pool, settings.canaries, settings.seed)
        dataset = replace(injected, label_values=dataset.label_values)
    k_models = settings.num_models
    keep = keep_mask(k_models, len(split.pool), settings.seed)
    plan = TrainingPlan(
        dataset=dataset,
        model=config.model,
        train=config.train,
        train_positions=[split.pool[keep[k]] for k in range(k_models)],
        validation_positions=split.validation,
        seeds=[int_seed(settings.seed, "model", k) for k in range(k_models)],
    )
    store = ModelStore(cache_dir / "models")
    to_train = sum(not store.has(spec_key(plan.spec(k))) for k in range(k_models))
    check_training_time(config, dataset, len(split.pool), to_train)
    return AuditSetup(
        config=config,
        dataset=dataset,
        split=split,
        keep=keep,
        plan=plan,
        store=store,
        transforms=transforms,
        canaries=canaries,
    )


def _positions_in(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """Index in ``haystack`` of every element of ``needles`` (all must be present)."""
    where = {int(v): i for i, v in enumerate(haystack)}
    return np.array([where[int(v)] for v in needles], dtype=np.int64)
