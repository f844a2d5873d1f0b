"""Each defence's privacy-utility point, from its audit, and the comparisons between them:
the strongest attack per metric, the undefended model under the same attacks, and the
privacy a sample-aware defence buys per accuracy point against its uniform counterpart."""

from __future__ import annotations

from typing import Any

from mialens.audit.results import AuditResult
from mialens.defenses.config import DefenseSpec
from mialens.metrics.leakage import fpr_key


def summarize_defense(result: AuditResult, spec: DefenseSpec) -> dict[str, Any]:
    """The privacy-utility point of one defended audit (the strongest attack per metric)."""
    utility = result.utility
    metrics = result.metrics
    attacks = {}
    for name, m in metrics.items():
        attacks[name] = {
            "auc": m.auc.mean,
            "tpr_at_fpr": m.levels_json(lambda e: e.mean),
            "tpr_interval": m.levels_json(lambda e: [e.ci_low, e.ci_high]),
            "threat_model": result.attacks[name]["threat_model"],
        }
    strongest_auc = max(metrics, key=lambda n: metrics[n].auc.mean)
    tpr = {}
    for level in result.fpr_levels:
        best = max(metrics, key=lambda n, lv=level: metrics[n].at(lv).mean)
        block = metrics[best].at(level)
        tpr[fpr_key(level)] = {
            "value": block.mean,
            "attack": best,
            "ci_low": block.ci_low,
            "ci_high": block.ci_high,
            "resolved": block.resolved,
        }
    epsilons = [r.get("epsilon") for r in result.training if r.get("epsilon") is not None]
    delta = (result.config.get("train", {}).get("dp") or {}).get("delta", 1e-5)
    auc_block = metrics[strongest_auc].auc
    return {
        "kind": _kind(spec),
        "spec": spec.model_dump(exclude_none=True),
        "train_acc": utility["train_accuracy"]["mean"],
        "test_acc": utility["test_accuracy"]["mean"],
        "test_acc_std": utility["test_accuracy"]["std"],
        "auc": {
            "value": auc_block.mean,
            "attack": strongest_auc,
            "ci_low": auc_block.ci_low,
            "ci_high": auc_block.ci_high,
        },
        "tpr_at_fpr": tpr,
        "attacks": attacks,
        "epsilon": max(epsilons) if epsilons else None,
        "epsilon_delta": delta,
        "training_seconds": float(sum(r.get("seconds") or 0.0 for r in result.training)),
        # seconds of reused models were recorded when they were trained, maybe under
        # other load: overheads are comparable only between freshly trained defences
        "models_reused": int(sum(bool(r.get("cached")) for r in result.training)),
        "inference_seconds_per_answer": result.design.get("defense_seconds_per_answer", 0.0),
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
