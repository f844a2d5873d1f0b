"""Run a complete audit from a validated configuration."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace

import numpy as np

from mialens.analysis.canaries import canary_metrics, inject_canaries
from mialens.attacks.base import QueryAttack, QueryData
from mialens.attacks.registry import build_attack
from mialens.audit.budget import check_design_cost
from mialens.audit.config import AuditConfig, AuditSettings
from mialens.audit.engine import ModelOutputs, accuracy, score_targets
from mialens.audit.models import TrainingPlan, load_models, models_logits
from mialens.audit.progress import ProgressHook, TrainingProgress, progress_hook, step_counter
from mialens.audit.results import AuditResult, attack_info
from mialens.augment import Transform
from mialens.data.dataset import Dataset
from mialens.data.registry import load_dataset
from mialens.defenses.apply import DefendedTarget, defend_logits, fit_per_model, random_inputs
from mialens.defenses.config import DefenseSpec
from mialens.defenses.output import OutputDefense, build_output_defense
from mialens.folders import writable_folder
from mialens.models.store import ModelStore, default_cache_dir
from mialens.models.training import fixed_threads
from mialens.seeding import int_seed
from mialens.signals.queries import QueryConfig, transforms_for
from mialens.splits import Split, keep_mask, make_split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditSetup:
    """Everything an audit derives from its configuration before training: the data,
    its split, the models' membership, the training plan, the store and the queries;
    ``canaries`` marks the pool samples replaced by canaries (None without canaries)."""

    config: AuditConfig
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
            build_model=self.plan.build,
            seed=settings.seed,
        )


def prepare_audit(config: AuditConfig, defense: DefenseSpec | None = None) -> AuditSetup:
    """Load the data and derive the split, keep mask, training plan and query views
    (with a sample-aware ``defense``, each model's training set adjusted by it)."""
    settings = config.audit
    cache_dir = writable_folder(
        settings.cache_dir or default_cache_dir(),
        "audit.cache_dir" if settings.cache_dir else "the cache folder ($MIALENS_CACHE_DIR)",
    )
    dataset = load_dataset(config.dataset)
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
    if defense is not None and defense.sample_aware is not None:
        plan, keep = _sample_aware_plan(plan, keep, split.pool, defense.sample_aware, settings.seed)
    return AuditSetup(
        config=config,
        dataset=dataset,
        split=split,
        keep=keep,
        plan=plan,
        store=ModelStore(cache_dir / "models"),
        transforms=transforms,
        canaries=canaries,
    )


def _sample_aware_plan(
    plan: TrainingPlan, keep: np.ndarray, pool: np.ndarray, config, seed: int
) -> tuple[TrainingPlan, np.ndarray]:
    """Each model's training set adjusted by a sample-aware defence: flagged samples
    removed (they are then non-members of that model: the keep mask follows), or given
    their own loss weight, label smoothing or gradient clipping."""
    from mialens.defenses.sample_aware import training_adjustment

    keep = keep.copy()
    positions, weights, smoothing, clip_norms = [], [], [], []
    for k, pos in enumerate(plan.train_positions):
        kept, weight, smooth, clip = training_adjustment(
            plan.dataset.x[pos], plan.dataset.y[pos], config, int_seed(seed, "sample-aware", k)
        )
        keep[k, np.flatnonzero(keep[k])[~kept]] = False
        positions.append(pos[kept])
        weights.append(weight)
        smoothing.append(smooth)
        clip_norms.append(clip)
    plan = replace(
        plan,
        train_positions=positions,
        sample_weights=None if weights[0] is None else weights,
        sample_smoothing=None if smoothing[0] is None else smoothing,
        sample_clip_norms=None if clip_norms[0] is None else clip_norms,
        clip_noise=config.noise_multiplier * config.clip_norm if clip_norms[0] is not None else 0.0,
    )
    return plan, keep


@fixed_threads()  # query attacks and output defences run models too
def run_audit(
    config: AuditConfig,
    out_dir: str | os.PathLike | None = None,
    progress: bool | ProgressHook = False,
    defense: DefenseSpec | None = None,
) -> AuditResult:
    """Train (or reuse) the audit's models, attack each in turn, and measure leakage.

    With ``out_dir`` the outputs (``metrics.json``, ``samples.csv``, ``report.html``) are
    written there, and the leakage analysis into ``out_dir/analysis`` when the
    configuration has an ``analysis:`` section. ``defense`` (from a defence evaluation)
    may adjust the training sets (sample-aware) and put an output defence in front of
    every model; its training overrides are already part of ``config``. ``progress``
    shows the training (per epoch) and the attacks: True for a bar on a terminal, else
    log lines (see :mod:`mialens.audit.progress`); a callable receives
    ``(stage, done, total, note)`` instead.
    """
    if out_dir is not None:  # before any training
        writable_folder(out_dir, "the output folder")
    settings = config.audit
    attacks = [build_attack(spec) for spec in settings.attacks]
    setup = prepare_audit(config, defense)
    dataset, split, keep, plan, store = (
        setup.dataset,
        setup.split,
        setup.keep,
        setup.plan,
        setup.store,
    )
    k_models = settings.num_models
    n_pool = len(split.pool)
    log.info(
        "audit of %s: %d models, pool %d, test %d, population %d, %d queries per sample",
        dataset.name,
        k_models,
        n_pool,
        len(split.test),
        len(split.population),
        len(setup.transforms),
    )
    with progress_hook(progress) as hook:
        training = TrainingProgress(hook, k_models, plan.train.epochs) if hook else None
        logits, records = models_logits(
            plan,
            store,
            setup.query_positions,
            setup.transforms,
            device=settings.device,
            executor=config.executor,
            on_model=(lambda k, r: training.model_done(k)) if training else None,
            on_epoch=training.epoch if training else None,
        )
        n_cached = sum(r["cached"] for r in records)
        log.info("%d of %d models reused from the cache at %s", n_cached, k_models, store.root)
        output_defenses, seconds_per_answer = None, 0.0
        if defense is not None and defense.output is not None:
            output_defenses = _fit_output_defenses(defense, setup, logits, settings)
            logits, seconds_per_answer = defend_logits(output_defenses, logits)

        pool_logits, test_logits = logits[:, :n_pool], logits[:, n_pool:]
        population_rows = _positions_in(split.test, split.population)
        outputs = ModelOutputs(
            logits=pool_logits,
            member=keep,
            labels=dataset.y[split.pool],
            population_logits=test_logits[:, population_rows],
            population_labels=dataset.y[split.population],
        )
        models = data = None
        if any(isinstance(a, QueryAttack) for a in attacks):
            models = load_models(plan, store, settings.device, config.executor)
            if output_defenses is not None:  # every answer goes through the defence
                models = [
                    DefendedTarget(m, d) for m, d in zip(models, output_defenses, strict=True)
                ]
            data = setup.query_data()
        scored = score_targets(
            attacks,
            outputs,
            range(k_models),
            models,
            data,
            on_step=step_counter(hook, "attacks", k_models * len(attacks)),
        )

    result = AuditResult(
        sample_ids=dataset.ids[split.pool],
        labels=dataset.y[split.pool],
        members=keep,
        target_models=list(range(k_models)),
        scores=scored.scores,
        attacks={
            a.name: attack_info(a, scored.queries_per_sample[a.name], scored.extras.get(a.name))
            for a in attacks
        },
        fpr_levels=list(settings.fpr),
        config=config.model_dump(mode="json"),
        design={
            "dataset": dataset.name,
            "num_models": k_models,
            "targets": k_models,
            "pool_size": n_pool,
            "validation_size": len(split.validation),
            "test_size": len(split.test),
            "population_size": len(split.population),
            "queries_per_sample": len(setup.transforms),
            "seed": settings.seed,
            "cache_dir": str(store.root.parent),
            **({"label_values": list(dataset.label_values)} if dataset.label_values else {}),
            **(_canary_design(settings, setup.canaries) if setup.canaries is not None else {}),
            **(
                {
                    "defense": defense.name,
                    "defense_spec": defense.model_dump(mode="json"),
                    "defense_seconds_per_answer": seconds_per_answer,
                }
                if defense is not None
                else {}
            ),
        },
        training=records,
    )
    test_labels = dataset.y[split.test]
    pool_labels = dataset.y[split.pool]
    result.set_utility(
        train_accuracy=[
            accuracy(pool_logits[k, keep[k], 0], pool_labels[keep[k]]) for k in range(k_models)
        ],
        test_accuracy=[accuracy(test_logits[k, :, 0], test_labels) for k in range(k_models)],
        test_source="held-out test set",
    )
    _warn_unresolved(result)
    result.compute_metrics(settings.bootstrap, settings.seed)
    if setup.canaries is not None:
        for name, scores in result.scores.items():
            result.metrics[name]["canaries"] = canary_metrics(
                scores, keep, setup.canaries, result.fpr_levels
            )
    analysis = None
    if config.analysis is not None:
        if out_dir is None:
            log.info("analysis: skipped without out_dir (mialens.analysis.run.analyze(result))")
        else:
            from mialens.analysis.run import analyze

            analysis = analyze(result, config.analysis, setup, pool_logits)
    if out_dir is not None:
        from mialens.report.files import write_outputs

        write_outputs(result, out_dir, analysis.summary if analysis else None)
        if analysis is not None:
            analysis.write(out_dir)
    return result


def _fit_output_defenses(
    defense: DefenseSpec, setup: AuditSetup, logits: np.ndarray, settings: AuditSettings
) -> list[OutputDefense]:
    """The output defence fitted per model on what its owner holds: the model's outputs
    on its training members, on the validation split (non-members) and on random inputs."""
    dataset, split, keep = setup.dataset, setup.split, setup.keep
    n_pool = len(split.pool)
    models = load_models(setup.plan, setup.store, settings.device, setup.config.executor)
    labels = dataset.y[split.pool]
    held_out = dataset.x[split.validation]
    noise = random_inputs(dataset.x[split.pool], 1000, int_seed(settings.seed, "random-inputs"))
    return fit_per_model(
        build_output_defense(defense.output),
        member_logits=[logits[k, :n_pool, 0][keep[k]] for k in range(len(models))],
        member_labels=[labels[keep[k]] for k in range(len(models))],
        nonmember_logits=[m.logits(held_out) for m in models] if len(held_out) else None,
        random_logits=[m.logits(noise) for m in models],
    )


def _canary_design(settings: AuditSettings, canaries: np.ndarray) -> dict[str, str]:
    kind, fraction = settings.canaries.kind, settings.canaries.fraction
    return {"canaries": f"{int(canaries.sum())} {kind} ({100 * fraction:g}% of the pool)"}


def _positions_in(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """Index in ``haystack`` of every element of ``needles`` (all must be present)."""
    where = {int(v): i for i, v in enumerate(haystack)}
    return np.array([where[int(v)] for v in needles], dtype=np.int64)


def _warn_unresolved(result: AuditResult) -> None:
    n_non = int((~result.members).sum(axis=1).min())
    for level in result.fpr_levels:
        if n_non * level < 1:
            log.warning(
                "TPR at FPR %g needs at least %d non-members per target; this audit has %d. "
                "It is reported as the TPR at FPR 0 and flagged unresolved (enlarge "
                "audit.pool_size to resolve it).",
                level,
                int(np.ceil(1 / level)),
                n_non,
            )
