"""The audit workflow: train (or reuse) the models, attack each in turn, measure the
leakage, explain it when asked, and write the run folder."""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack

import numpy as np

from mialens.attacks.base import Attack
from mialens.audit.design import AuditSetup, prepare_audit
from mialens.audit.engine import Scores, score_targets
from mialens.audit.results import AuditResult
from mialens.audit.training_plan import load_models, models_logits
from mialens.defenses.apply import DefendedTarget, defend_logits, fit_output_defenses
from mialens.defenses.config import DefenseSpec
from mialens.defenses.output import OutputDefense, build_output_defense
from mialens.defenses.sample_aware import adjusted_setup
from mialens.folders import writable_folder
from mialens.metrics.threshold_position import MIN_FALSE_POSITIVES_FOR_INTERVAL, widened_levels
from mialens.report.figure_data import audit_figures
from mialens.report.figure_worker import FigureWorker, figure_worker
from mialens.targets.adapters import TorchTarget
from mialens.threads import fixed_threads
from mialens.workflows.config import AuditConfig
from mialens.workflows.outputs import write_analysis, write_outputs
from mialens.workflows.phases import phase
from mialens.workflows.progress import ProgressHook, TrainingProgress, progress_hook, step_counter

log = logging.getLogger(__name__)


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
    log lines (see :mod:`mialens.workflows.progress`); a callable receives
    ``(stage, done, total, note)`` instead. A text audit's configuration
    (:class:`~mialens.audit.text_settings.TextAuditSpec`) runs
    :func:`~mialens.workflows.text_audit.run_text_audit`.
    """
    from mialens.audit.text_settings import TextAuditSpec

    if isinstance(config, TextAuditSpec):  # a language-model audit
        from mialens.workflows.text_audit import run_text_audit

        return run_text_audit(config, out_dir, progress)
    if out_dir is not None:  # before any training
        writable_folder(out_dir, "the output folder")
    with phase("design"):
        attacks = config.audit.build_attacks()
        setup = prepare_audit(config)
        if defense is not None and defense.sample_aware is not None:
            setup = adjusted_setup(setup, defense.sample_aware)
    _log_design(setup)
    n_scores = setup.config.audit.num_models * len(setup.split.pool) * len(attacks)
    with ExitStack() as stack:
        with progress_hook(progress) as hook:
            with phase("load"):  # train what the cache lacks, or reuse its logits
                logits, records = _trained_logits(setup, hook)
            # a process that draws the report's figures (None when drawn here) imports
            # its plotting while the audit scores
            worker = stack.enter_context(figure_worker(n_scores if out_dir is not None else 0))
            with phase("scoring"):
                models = _live_models(setup, attacks, defense)
                logits, output_defenses, design = _defend(setup, defense, logits, models)
                scored = _score(setup, attacks, logits, models, output_defenses, hook)
                result = setup.result(attacks, scored, logits, records, design)
        _warn_unresolved(result, setup.config.audit.bootstrap)
        _measure(result, setup, worker)
        if out_dir is not None:
            _write(result, config, setup, logits, out_dir, worker)
        elif config.analysis is not None:
            log.info("analysis: skipped without out_dir (mialens.analysis.explain.analyze(result))")
    return result


def _measure(result: AuditResult, setup: AuditSetup, worker: FigureWorker | None) -> None:
    """The leakage metrics. A figure ``worker`` gets the figures once the point metrics
    are known, and draws them while the bootstrap intervals are computed."""
    with phase("metrics"):
        result.compute_point_metrics()
    if worker is not None:
        with phase("report"):
            worker.submit(audit_figures(result))
    with phase("metrics"):
        result.add_intervals(setup.config.audit.bootstrap, setup.config.audit.seed)
        if setup.canaries is not None:
            setup.canary_metrics(result)


def _log_design(setup: AuditSetup) -> None:
    split = setup.split
    log.info(
        "audit of %s: %d models, pool %d, test %d, population %d, %d queries per sample",
        setup.dataset.name,
        setup.config.audit.num_models,
        len(split.pool),
        len(split.test),
        len(split.population),
        len(setup.transforms),
    )


def _trained_logits(setup: AuditSetup, hook: ProgressHook | None) -> tuple[np.ndarray, list]:
    """Every model's logits on the setup's query positions (training what the cache does
    not hold), and the training records."""
    settings, plan = setup.config.audit, setup.plan
    training = TrainingProgress(hook, settings.num_models, plan.train.epochs) if hook else None
    logits, records = models_logits(
        plan,
        setup.store,
        setup.query_positions,
        setup.transforms,
        device=settings.device,
        executor=setup.config.executor,
        on_model=(lambda k, r: training.model_done(k)) if training else None,
        on_epoch=training.epoch if training else None,
    )
    n_cached = sum(r["cached"] for r in records)
    log.info(
        "%d of %d models reused from the cache at %s", n_cached, len(records), setup.store.root
    )
    return logits, records


def _live_models(
    setup: AuditSetup, attacks: list[Attack], defense: DefenseSpec | None
) -> list[TorchTarget] | None:
    """The models as queryable targets, loaded once when an output defence is fitted on
    them or an attack queries them (else None)."""
    if not any(a.needs.input == "queries" for a in attacks) and (
        defense is None or defense.output is None
    ):
        return None
    settings = setup.config.audit
    return load_models(setup.plan, setup.store, settings.device, setup.config.executor)


def _defend(
    setup: AuditSetup,
    defense: DefenseSpec | None,
    logits: np.ndarray,
    models: list[TorchTarget] | None,
) -> tuple[np.ndarray, list[OutputDefense] | None, dict]:
    """The released logits, the fitted output defence of every model (None without one)
    and the defence's entries of the design (none without a defence)."""
    if defense is None:
        return logits, None, {}
    design = {"defense": defense.name, "defense_spec": defense.model_dump(mode="json")}
    output_defenses, seconds_per_answer = None, 0.0
    if defense.output is not None:
        output = build_output_defense(defense.output)
        output_defenses = fit_output_defenses(output, setup, logits, models)
        logits, seconds_per_answer = defend_logits(output_defenses, logits)
    design["defense_seconds_per_answer"] = seconds_per_answer
    return logits, output_defenses, design


def _score(
    setup: AuditSetup,
    attacks: list[Attack],
    logits: np.ndarray,
    models: list[TorchTarget] | None,
    output_defenses: list[OutputDefense] | None,
    hook: ProgressHook | None,
) -> Scores:
    """Every attack against every model, the others as its references; attacks that
    query models get them live, answering through the output defence if there is one."""
    data = None
    if any(a.needs.input == "queries" for a in attacks):
        if output_defenses is not None:  # every answer goes through the defence
            models = [DefendedTarget(m, d) for m, d in zip(models, output_defenses, strict=True)]
        data = setup.query_data()
    k_models = setup.config.audit.num_models
    return score_targets(
        attacks,
        setup.outputs(logits),
        range(k_models),
        models,
        data,
        on_step=step_counter(hook, "attacks", k_models * len(attacks)),
    )


def _write(
    result: AuditResult,
    config: AuditConfig,
    setup: AuditSetup,
    logits: np.ndarray,
    out_dir: str | os.PathLike,
    worker: FigureWorker | None,
) -> None:
    """The run folder: the audit's outputs (the report's figures drawn by ``worker`` if
    there is one) and, when configured, its analysis."""
    analysis = None
    if config.analysis is not None:
        from mialens.analysis.explain import analyze  # its models load only when asked

        with phase("analysis"):
            pool_logits = logits[:, : len(setup.split.pool)]
            analysis = analyze(result, config.analysis, setup, pool_logits)
    write_outputs(result, out_dir, analysis.summary if analysis else None, worker)
    if analysis is not None:
        with phase("analysis"):
            write_analysis(analysis, out_dir)


def _warn_unresolved(result: AuditResult, n_boot: int) -> None:
    """Warn of levels too low for the non-members to resolve; say which resolved ones get
    bootstrap intervals widened by the threshold's position (few false positives)."""
    n_non = int((~result.members).sum(axis=1).min())
    widen = widened_levels(result.members, np.array(result.fpr_levels)) if n_boot else None
    widened = []
    for i, level in enumerate(result.fpr_levels):
        if n_non * level < 1:
            log.warning(
                "TPR at FPR %g needs at least %d non-members per target; this audit has %d. "
                "It is reported as the TPR at FPR 0 and flagged unresolved (enlarge "
                "audit.pool_size to resolve it).",
                level,
                int(np.ceil(1 / level)),
                n_non,
            )
        elif widen is not None and widen[i]:
            widened.append(f"{level:g}")
    if widened:
        log.info(
            "the bootstrap intervals of TPR at FPR %s are widened by the threshold's "
            "position (conservative): a threshold there accepts fewer than %d of a "
            "target's %d non-members (mialens.metrics.threshold_position)",
            ", ".join(widened),
            MIN_FALSE_POSITIVES_FOR_INTERVAL,
            n_non,
        )
