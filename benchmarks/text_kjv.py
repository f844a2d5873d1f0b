"""The language-model audit of issue 15 end to end: examples/text_kjv.yaml (16 byte-level
LMs on KJV verses with secret-sharer canaries and every text attack), then its acceptance
checks as JSON:

- the paired exposure differences 4-1 and 16-4 with their 95% t intervals over targets
  (is the interval above 0?);
- per 16x canary, the share of the targets that trained it whose LiRA-online 1%-FPR
  threshold (set on natural non-members) it passes (all >= 0.9?);
- reference-model attacks vs reference-free ones at TPR@1% and 0.1% with bootstrap
  intervals (the natural samples only; canaries are not in these metrics).

Resumable: the LMs and their log-probabilities live in the model store, so a rerun
after an interruption trains only the missing LMs. ``--smoke`` runs a tiny version
(4 LMs) in minutes.

    PYTHONPATH=src python benchmarks/text_kjv.py --out runs/text_kjv            # full
    PYTHONPATH=src python benchmarks/text_kjv.py --smoke --out /tmp/text_kjv_smoke
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mialens.io import write_json
from mialens.workflows.audit import run_audit
from mialens.workflows.config import load_config

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "text_kjv.yaml"
REFERENCE = ["lira_online", "lira_offline", "rmia_online", "rmia_offline", "reference"]
REFERENCE_FREE = ["loss", "zlib", "lowercase", "min_k", "min_k_plus_plus", "recall"]
SMOKE = [
    "audit.num_models=4",
    "audit.pool_size=300",
    "audit.test_size=200",
    "audit.population_size=50",
    "audit.bootstrap=50",
    "audit.canaries.per_repetition=2",
    "audit.canaries.candidates=1000",
    "train.epochs=2",
]


def _differences(canaries: dict) -> list[dict]:
    return [
        {**d, "above_zero": d["ci_low"] > 0} if "error" not in d else d
        for d in canaries["differences"]
    ]


def _top_canaries(canaries: dict) -> dict:
    largest = max(r["repetitions"] for r in canaries["by_repetition"])
    rate = next(
        r
        for r in canaries["tpr_at_fpr"]["lira_online"]
        if r["repetitions"] == largest and r["level"] == 0.01
    )
    shares = [s for s in rate["per_canary"] if s is not None]
    return {
        "repetitions": largest,
        "share_of_trained_targets_at_1%_fpr": rate["per_canary"],
        "all_at_least_0.9": bool(shares) and min(shares) >= 0.9,
    }


def _attack_table(metrics: dict) -> dict:
    table = {}
    for group, names in (("reference", REFERENCE), ("reference_free", REFERENCE_FREE)):
        table[group] = {
            name: {
                level: {
                    "tpr": metrics["attacks"][name]["tpr_at_fpr"][level]["mean"],
                    "low": metrics["attacks"][name]["tpr_at_fpr"][level]["bootstrap"]["low"],
                    "high": metrics["attacks"][name]["tpr_at_fpr"][level]["bootstrap"]["high"],
                }
                for level in ("0.01", "0.001")
                if level in metrics["attacks"][name]["tpr_at_fpr"]
            }
            for name in names
            if name in metrics["attacks"]
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the run folder")
    parser.add_argument("--smoke", action="store_true", help="4 tiny LMs, minutes")
    args = parser.parse_args()
    config = load_config(EXAMPLE, SMOKE if args.smoke else [])
    wall, cpu = time.perf_counter(), time.process_time()
    run_audit(config, args.out)
    metrics = json.loads((args.out / "metrics.json").read_text())
    canaries = json.loads((args.out / "canaries.json").read_text())
    report = {
        "smoke": args.smoke,
        "num_models": metrics["design"]["num_models"],
        "cached_lms": sum(r["cached"] for r in metrics["training"]),
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "exposure_differences": _differences(canaries),
        "top_canaries_lira_online": _top_canaries(canaries),
        "attacks_tpr": _attack_table(metrics),
    }
    write_json(args.out / "benchmark.json", report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
