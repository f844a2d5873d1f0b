"""Evaluate defences as privacy-utility points against adaptive attacks.

Every defence is a full audit: the target and all reference models are trained with
the defended recipe and answer through the same output defence, so the attacks adapt
to it (Li & Zhang 2025, Sec. 4: "a defence is only worth what the attack against it
was worth"). Output defences, which only touch confidences, are also attacked with
label-only attacks. Each defence becomes one point: test accuracy against the TPR at
low FPR of the strongest attack, with its cost in training and inference time.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

from mialens.attacks.registry import build_attack
from mialens.audit.config import AuditConfig, validate_config
from mialens.audit.results import AuditResult
from mialens.defenses.config import DefenseSpec
from mialens.defenses.dp_audit import strongest_epsilon
from mialens.errors import ConfigError, DataError
from mialens.io import write_json, write_text
from mialens.metrics.leakage import fpr_key
from mialens.report.files import METRICS_FILE, REPORT_FILE, load_result

log = logging.getLogger(__name__)

DEFENSES_FILE = "defenses.json"


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


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
    raw = _merge(raw, {"train": spec.train, "audit": spec.audit})
    aware = spec.sample_aware
    if aware is not None and aware.action == "remove":
        attacks = raw["audit"]["attacks"]
        kept = [a for a in attacks if build_attack(a).references != "online"]
        if not kept:
            raise ConfigError(
                f"defence {spec.name!r} removes training samples, which online attacks cannot "
                "audit; add an offline or reference-free attack to audit.attacks"
            )
        if len(kept) < len(attacks):
            log.warning(
                "defence %r removes training samples: its audit skips the online attacks %s",
                spec.name,
                ", ".join(build_attack(a).name for a in attacks if a not in kept),
            )
        if raw.get("analysis") is not None:
            log.warning("defence %r removes training samples: no per-sample analysis", spec.name)
        raw["audit"]["attacks"] = kept
        raw["analysis"] = None
    if spec.output is not None:
        attacks = [
            a for a in raw["audit"]["attacks"] if build_attack(a).threat_model != "white-box"
        ]
        names = {build_attack(a).name for a in attacks}
        for extra in config.defenses.label_only_attacks:
            if build_attack(extra).name not in names:
                attacks.append(extra)
        raw["audit"]["attacks"] = attacks
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


def summarize_defense(result: AuditResult, spec: DefenseSpec) -> dict[str, Any]:
    """The privacy-utility point of one defended audit (the strongest attack per metric)."""
    utility = result.utility
    attacks = {}
    for name, m in result.metrics.items():
        attacks[name] = {
            "auc": m["auc"]["mean"],
            "tpr_at_fpr": {k: v["mean"] for k, v in m["tpr_at_fpr"].items()},
            "tpr_interval": {k: [v["ci_low"], v["ci_high"]] for k, v in m["tpr_at_fpr"].items()},
            "threat_model": result.attacks[name]["threat_model"],
        }
    strongest_auc = max(result.metrics, key=lambda n: result.metrics[n]["auc"]["mean"])
    tpr = {}
    for level in result.fpr_levels:
        key = fpr_key(level)
        best = max(result.metrics, key=lambda n, k=key: result.metrics[n]["tpr_at_fpr"][k]["mean"])
        block = result.metrics[best]["tpr_at_fpr"][key]
        tpr[key] = {
            "value": block["mean"],
            "attack": best,
            "ci_low": block["ci_low"],
            "ci_high": block["ci_high"],
            "resolved": block["resolved"],
        }
    epsilons = [r.get("epsilon") for r in result.training if r.get("epsilon") is not None]
    delta = (result.config.get("train", {}).get("dp") or {}).get("delta", 1e-5)
    empirical = (
        strongest_epsilon(result.scores, result.members, delta=delta)
        if len(result.target_models) > 1
        else None
    )
    auc_block = result.metrics[strongest_auc]["auc"]
    return {
        "kind": _kind(spec),
        "spec": spec.model_dump(exclude_none=True),
        "train_acc": utility["train_accuracy"]["mean"],
        "test_acc": utility["test_accuracy"]["mean"],
        "test_acc_std": utility["test_accuracy"]["std"],
        "auc": {
            "value": auc_block["mean"],
            "attack": strongest_auc,
            "ci_low": auc_block["ci_low"],
            "ci_high": auc_block["ci_high"],
        },
        "tpr_at_fpr": tpr,
        "attacks": attacks,
        "epsilon": max(epsilons) if epsilons else None,
        "epsilon_empirical": empirical,
        "epsilon_delta": delta,
        "training_seconds": float(sum(r.get("seconds") or 0.0 for r in result.training)),
        # seconds of reused models were recorded when they were trained, maybe under
        # other load: overheads are comparable only between freshly trained defences
        "models_reused": int(sum(bool(r.get("cached")) for r in result.training)),
        "inference_seconds_per_answer": result.design.get("defense_seconds_per_answer", 0.0),
        "report": f"defenses/{spec.folder}/{REPORT_FILE}",
    }


def _kind(spec: DefenseSpec) -> str:
    if spec.sample_aware is not None:
        return (
            "sample-aware (uniform counterpart)"
            if spec.sample_aware.counterpart
            else "sample-aware"
        )
    if spec.output is not None:
        return "inference-time"
    return "training-time" if spec.train or spec.audit else "none"


def compare_sample_aware(entries: dict[str, dict[str, Any]], level: str) -> list[dict[str, Any]]:
    """Privacy bought per accuracy point by each sample-aware defence and its uniform
    counterpart (same action, detector and fraction), relative to the undefended model
    attacked by the same attacks as the defended one."""
    base = entries.get("undefended")
    if base is None:
        return []
    rows = []
    for name, entry in entries.items():
        spec = entry["spec"].get("sample_aware")
        if not spec or spec.get("counterpart"):
            continue
        twin = next(
            (
                n
                for n, e in entries.items()
                if (e["spec"].get("sample_aware") or {}).get("counterpart")
                and {**e["spec"]["sample_aware"], "counterpart": False} == spec
            ),
            None,
        )
        row = {"defense": name, "counterpart": twin}
        for label, key in (("sample_aware", name), ("uniform", twin)):
            if key is None:
                continue
            e = entries[key]
            privacy = _strongest_tpr(base, level, e["attacks"]) - e["tpr_at_fpr"][level]["value"]
            cost = base["test_acc"] - e["test_acc"]
            row[label] = {
                "tpr_reduction": privacy,
                "accuracy_cost": cost,
                "privacy_per_accuracy_point": privacy / cost if cost > 1e-9 else None,
                "free": privacy > 0 and cost <= 1e-9,  # privacy without losing accuracy
            }
        rows.append(row)
    return rows


def mark_comparable(entries: dict[str, dict[str, Any]]) -> None:
    """Flag, in place, the defences whose audit left out attacks of the undefended one.

    The strongest attack of a defence audited with fewer attacks (a removal skips the
    online attacks) is not comparable with the undefended model's strongest attack: its
    privacy would look better only because the strongest attacks never ran. Such an
    entry gets ``comparable: false``, the ``missing_attacks`` and
    ``undefended_same_attacks``: per FPR level, the undefended model's strongest TPR
    (with its interval and attack) among the attacks both audits ran.
    """
    base = entries.get("undefended")
    for entry in entries.values():
        missing = [] if base is None else [a for a in base["attacks"] if a not in entry["attacks"]]
        entry["comparable"] = not missing
        entry["missing_attacks"] = missing
        shared = [] if base is None else [a for a in entry["attacks"] if a in base["attacks"]]
        if not missing or not shared:
            entry["undefended_same_attacks"] = None
            continue
        restricted = {}
        for level in entry["tpr_at_fpr"]:
            best = max(shared, key=lambda n, lv=level: base["attacks"][n]["tpr_at_fpr"][lv])
            low, high = base["attacks"][best]["tpr_interval"][level]
            restricted[level] = {
                "value": base["attacks"][best]["tpr_at_fpr"][level],
                "attack": best,
                "ci_low": low,
                "ci_high": high,
            }
        entry["undefended_same_attacks"] = restricted


def _strongest_tpr(entry: dict[str, Any], level: str, attacks: dict[str, Any]) -> float:
    """The highest TPR at ``level`` that the named ``attacks`` reach on ``entry``."""
    return max(entry["attacks"][n]["tpr_at_fpr"][level] for n in attacks if n in entry["attacks"])


def evaluate_defenses(
    config: AuditConfig, out_dir: str | os.PathLike, progress: bool = False
) -> dict[str, Any]:
    """Audit every defence of ``config.defenses`` and write ``defenses.json`` (and the
    privacy-utility page ``defenses.html``) into ``out_dir``."""
    from mialens.audit.runner import run_audit
    from mialens.defenses.report import render_defenses

    settings = config.defenses
    specs = list(settings.evaluate)
    if settings.include_undefended and all(s.name != "undefended" for s in specs):
        specs.insert(0, DefenseSpec(name="undefended"))
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
    mark_comparable(entries)
    base_seconds = entries.get("undefended", {}).get("training_seconds")
    for entry in entries.values():
        entry["training_overhead"] = (
            entry["training_seconds"] / base_seconds if base_seconds else None
        )
    levels = [fpr_key(v) for v in config.audit.fpr]
    level = "0.001" if "0.001" in levels else levels[-1]
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


def monitor_report(config: AuditConfig) -> dict[str, Any]:
    """The ``defenses.monitor`` evaluation in front of the undefended audit's first model:
    calibrated on its training set, benign traffic from the held-out test split, attack
    streams on pool samples with the other models as the attacker's references."""
    from mialens.attacks.base import QueryReferences
    from mialens.audit.models import load_models
    from mialens.audit.runner import prepare_audit
    from mialens.defenses.monitor_evaluation import evaluate_monitor

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
        [build_attack(a) for a in specs],
        data,
        QueryReferences(models[1:], setup.keep[1:], data) if len(models) > 1 else None,
        settings,
        plain.audit.seed,
    )
