"""The defence workflow: evaluate defences as privacy-utility points against adaptive
attacks.

Every defence is a full audit: the target and all reference models are trained with
the defended recipe and answer through the same output defence, so the attacks adapt
to it (Li & Zhang 2025, Sec. 4: "a defence is only worth what the attack against it
was worth"). Output defences, which only touch confidences, are also attacked with
label-only attacks. Each defence becomes one point: test accuracy against the TPR at
low FPR of the strongest attack, with its cost in training and inference time.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from mialens.attacks.base import QueryReferences
from mialens.audit.design import prepare_audit
from mialens.audit.results import AuditResult
from mialens.audit.settings import build_attacks, declare_attacks
from mialens.audit.training_plan import load_models
from mialens.data.catalog import load_dataset
from mialens.defenses.config import DefenseSpec
from mialens.defenses.dp_audit import with_bounds, without_bound
from mialens.defenses.monitor_evaluation import evaluate_monitor
from mialens.defenses.summary import compare_sample_aware, mark_comparable, summarize_defense
from mialens.errors import ConfigError, DataError
from mialens.io import write_json, write_text
from mialens.metrics.leakage import fpr_key
from mialens.report.defenses_page import render_defenses
from mialens.workflows.audit import run_audit
from mialens.workflows.config import AuditConfig, DPAuditConfig, merge_overrides, validate_config
from mialens.workflows.dp_audit import check_runs, run_dp_audit
from mialens.workflows.outputs import METRICS_FILE, REPORT_FILE, load_result

log = logging.getLogger(__name__)

DEFENSES_FILE = "defenses.json"


def defended_config(config: AuditConfig, spec: DefenseSpec) -> AuditConfig:
    """The audit of one defence: the base recipe with the defence's overrides; output
    defences are also attacked label-only, and never white-box (they do not hide the
    parameters).

    A sample-aware removal takes a sample that every model flags out of every training
    set, so it is IN for no reference model: online attacks, which need IN references
    for every sample, and the per-sample analysis, which needs each sample IN for two
    models, are left out of both the removal and its uniform counterpart (the same
    attacks for both keeps the comparison fair).
    """
    raw = config.model_dump(mode="json")
    raw.pop("defenses", None)
    raw.pop("dp_audit", None)  # the defence's DP audit is played beside its audit
    raw = merge_overrides(raw, {"train": spec.train, "audit": spec.audit})
    aware = spec.sample_aware
    removes = aware is not None and aware.action == "remove"
    if removes or spec.output is not None:  # each listed attack with its declaration
        specs = raw["audit"]["attacks"]
        listed = list(zip(specs, declare_attacks(specs), strict=True))
    if removes:
        online = [a.name for _, a in listed if a.references == "online"]
        listed = [(s, a) for s, a in listed if a.references != "online"]
        if not listed:
            raise ConfigError(
                f"defence {spec.name!r} removes training samples, which online attacks cannot "
                "audit; add an offline or reference-free attack to audit.attacks"
            )
        if online:
            log.warning(
                "defence %r removes training samples: its audit skips the online attacks %s",
                spec.name,
                ", ".join(online),
            )
        if raw.get("analysis") is not None:
            log.warning("defence %r removes training samples: no per-sample analysis", spec.name)
        raw["audit"]["attacks"] = [s for s, _ in listed]
        raw["analysis"] = None
    if spec.output is not None:
        listed = [(s, a) for s, a in listed if a.threat_model != "white-box"]
        names = {a.name for _, a in listed}
        extras = config.defenses.label_only_attacks
        raw["audit"]["attacks"] = [s for s, _ in listed] + [
            s for s, a in zip(extras, declare_attacks(extras), strict=True) if a.name not in names
        ]
    return validate_config(raw)


def completed_audit(run_dir: Path, config: AuditConfig, spec: DefenseSpec) -> AuditResult | None:
    """The finished audit of this defence in ``run_dir`` when it ran with exactly this
    configuration and defence (a rerun of ``mialens defend`` resumes there), else None."""
    try:
        doc = json.loads((run_dir / METRICS_FILE).read_text(encoding="utf-8"))
        same = doc["config"] == config.model_dump(mode="json") and doc["design"].get(
            "defense_spec"
        ) == spec.model_dump(mode="json")
        return load_result(run_dir) if same else None
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, DataError) as exc:
        log.warning(
            "defence %r: the audit in %s is unreadable (%s); rerunning", spec.name, run_dir, exc
        )
        return None


def evaluate_defenses(
    config: AuditConfig, out_dir: str | os.PathLike, progress: bool = False
) -> dict[str, Any]:
    """Audit every defence of ``config.defenses`` and write ``defenses.json`` (and the
    privacy-utility page ``defenses.html``) into ``out_dir``."""
    settings = config.defenses
    specs = list(settings.evaluate)
    if settings.include_undefended and all(s.name != "undefended" for s in specs):
        specs.insert(0, DefenseSpec(name="undefended"))
    check_defense_dp_audits(config, specs)
    out = Path(out_dir)
    entries: dict[str, dict[str, Any]] = {}
    for spec in specs:
        run_dir = out / "defenses" / spec.folder
        defended = defended_config(config, spec)
        result = completed_audit(run_dir, defended, spec)
        if result is None:
            log.info("defence %r", spec.name)
            result = run_audit(defended, run_dir, progress, defense=spec)
        else:
            log.info("defence %r: reusing its finished audit in %s", spec.name, run_dir)
        entries[spec.name] = summarize_defense(result, spec)
        entries[spec.name]["report"] = f"defenses/{spec.folder}/{REPORT_FILE}"
        entries[spec.name]["dp_audit"] = defense_dp_audit(config, defended, spec, run_dir)
    mark_comparable(entries)
    base_seconds = entries.get("undefended", {}).get("training_seconds")
    for entry in entries.values():
        entry["training_overhead"] = (
            entry["training_seconds"] / base_seconds if base_seconds else None
        )
    fpr = config.audit.fpr
    level = fpr_key(0.001 if 0.001 in fpr else fpr[-1])  # the key of defenses.json
    report = {
        "defenses": entries,
        "privacy_level": level,
        "sample_aware_vs_uniform": compare_sample_aware(entries, level),
        "config": config.model_dump(mode="json"),
    }
    if settings.monitor is not None:
        log.info("query monitor: false alarms and detection")
        report["monitor"] = monitor_report(config)
    write_json(out / DEFENSES_FILE, report)
    write_text(out / "defenses.html", render_defenses(report))
    return report


def check_defense_dp_audits(config: AuditConfig, specs: list[DefenseSpec]) -> None:
    """Refuse an impossible DP audit of any DP-SGD defence (e.g. more canaries than its data
    allows) before the first defence is audited."""
    if config.dp_audit is None:
        return
    for spec in specs:
        defended = defended_config(config, spec)
        if defended.train.dp is not None:
            check_runs(load_dataset(defended.dataset), defended.train, config.dp_audit)


def defense_dp_audit(
    config: AuditConfig, defended: AuditConfig, spec: DefenseSpec, run_dir: Path
) -> dict[str, Any]:
    """The defence's ``dp_audit`` entry: for a DP-SGD defence and a ``dp_audit:`` section,
    the bounds of a run of its recipe with independently included canaries (written to
    ``run_dir/dp_audit``, its models cached with the audit's); else why there is none."""
    dp_sgd = defended.train.dp is not None
    if config.dp_audit is None or not dp_sgd:
        return without_bound(dp_sgd)
    settings = config.dp_audit
    if settings.cache_dir is None:
        settings = settings.model_copy(update={"cache_dir": defended.audit.cache_dir})
    audit = DPAuditConfig(
        dataset=defended.dataset, model=defended.model, train=defended.train, dp_audit=settings
    )
    log.info("defence %r: DP audit with %d %s canaries", spec.name, settings.count, settings.kind)
    report = run_dp_audit(audit, run_dir / "dp_audit")
    return with_bounds(report.doc, f"defenses/{spec.folder}/dp_audit/dp_audit.html")


def monitor_report(config: AuditConfig) -> dict[str, Any]:
    """The ``defenses.monitor`` evaluation in front of the undefended audit's first model:
    calibrated on its training set, benign traffic from the held-out test split, attack
    streams on pool samples with the other models as the attacker's references."""
    settings = config.defenses.monitor
    plain = defended_config(config, DefenseSpec(name="undefended"))
    setup = prepare_audit(plain)
    dataset, split = setup.dataset, setup.split
    models = load_models(setup.plan, setup.store, plain.audit.device, setup.config.executor)
    data = setup.query_data()
    specs = settings.attacks if settings.attacks is not None else config.defenses.label_only_attacks
    return evaluate_monitor(
        models[0],
        dataset.x[setup.plan.train_positions[0]],
        dataset.x[split.test],
        build_attacks(specs),
        data,
        QueryReferences(models[1:], setup.keep[1:], data) if len(models) > 1 else None,
        settings,
        plain.audit.seed,
    )
