"""The text audit workflow: train (or reuse) the causal LMs on complementary halves of the
pool's near-duplicate groups, read their cached per-token log-probabilities, attack each
LM with the others as references, measure the leakage and write the run folder
(metrics.json, samples.csv with verse ids, report.html) as the classifier audit does.
With ``audit.canaries`` it also measures the canaries (:mod:`mialens.audit.text_canaries`)
and writes canaries.json; their brief is part of the result (``canaries`` in metrics.json,
a section of report.html, kept by a result read back from the run folder)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mialens.attacks.text_attacks import score_text_attacks
from mialens.audit.results import AuditResult
from mialens.audit.text_canaries import canary_brief, canary_summary
from mialens.audit.text_design import TextAuditSetup, prepare_text_audit
from mialens.audit.text_gate import run_gate
from mialens.audit.text_models import text_signals, train_lms
from mialens.audit.text_results import text_result
from mialens.audit.text_settings import TextAuditSpec
from mialens.data.text import TextDataset
from mialens.folders import writable_folder
from mialens.io import write_json
from mialens.workflows.outputs import write_outputs
from mialens.workflows.phases import phase
from mialens.workflows.progress import ProgressHook, progress_hook, step_counter

log = logging.getLogger(__name__)
SECRET_CANARIES_FILE = "canaries.json"


def run_text_audit(
    config: TextAuditSpec,
    out_dir: str | os.PathLike | None = None,
    progress: bool | ProgressHook = False,
    extra_pool: TextDataset | None = None,
    member_texts: Sequence[str] | None = None,
    nonmember_texts: Sequence[str] | None = None,
) -> AuditResult:
    """Audit the LMs of ``config``; with ``out_dir`` write the outputs there.
    ``extra_pool``: texts added to the pool (canaries, see
    :func:`~mialens.audit.text_design.prepare_text_audit`). ``member_texts`` and
    ``nonmember_texts``: the texts of the blind-baseline gate instead of the design's
    (:mod:`mialens.audit.text_gate`)."""
    if out_dir is not None:  # before any training
        writable_folder(out_dir, "the output folder")
    with phase("design"):
        attacks = config.audit.build_attacks()
        setup = prepare_text_audit(config, extra_pool)
        gate = _blind_gate(setup, member_texts, nonmember_texts)
    log.info(
        "text audit of %s: %d LMs, pool %d samples in %d groups, test %d, population %d",
        setup.dataset.name,
        setup.num_models,
        len(setup.split.pool),
        setup.design()["pool_groups"],
        len(setup.split.test),
        len(setup.split.population),
    )
    with progress_hook(progress) as hook:
        with phase("load"):
            trained = step_counter(hook, "training", setup.num_models)
            records = train_lms(setup, None if trained is None else lambda _k: trained())
            signals, plain = text_signals(setup)
        with phase("scoring"):
            on_step = step_counter(hook, "attacks", setup.num_models * len(attacks))
            scores = score_text_attacks(attacks, signals, on_step)
    result = text_result(setup, attacks, scores, plain, records)
    result.blind_baseline = gate
    with phase("metrics"):
        result.compute_metrics(config.audit.bootstrap, config.audit.seed)
    canaries = measure_canaries(setup, scores)
    if canaries is not None:
        result.secret_canaries = canary_brief(canaries)
    if out_dir is not None:
        if canaries is not None:
            write_json(Path(out_dir) / SECRET_CANARIES_FILE, canaries)
        write_outputs(result, out_dir)
    return result


def _blind_gate(
    setup: TextAuditSetup,
    member_texts: Sequence[str] | None,
    nonmember_texts: Sequence[str] | None,
) -> dict[str, Any] | None:
    """The distribution-shift gate, before training (a few seconds), logged."""
    gate = run_gate(setup, member_texts, nonmember_texts)
    if gate is not None:
        (log.warning if gate["fires"] else log.info)("blind baseline: %s", gate["message"])
    return gate


def measure_canaries(setup: TextAuditSetup, scores: dict[str, Any]) -> dict[str, Any] | None:
    """The canaries.json content of an audit with ``audit.canaries`` (else None)."""
    if setup.canaries is None:
        return None
    with phase("canaries"):
        summary = canary_summary(setup, scores)
    for row in canary_brief(summary)["by_repetition"]:
        log.info("canaries inserted %dx: mean exposure %s bits trained, %s untrained",
                 row["repetitions"], row["exposure_in"], row["exposure_out"])  # fmt: skip
    return summary
