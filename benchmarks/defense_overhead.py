"""Cost of every defence of the Location30 defence example, measured side by side.

``mialens defend`` reports the training seconds recorded when each model was trained,
which mixes runs made under different machine load when models come from the cache.
This benchmark trains the first ``--models`` models of every training-time and
sample-aware defence one by one on one torch thread, after a warm-up model, with the
undefended recipe timed before and after the others (its faster pass is the baseline),
and times every output defence on the same logits (fastest of ``--repeats``); it
records seconds per model, the overhead against the undefended recipe, test accuracy,
and microseconds per released answer. Needs Location30 (``$MIALENS_DATA_DIR``).

    MIALENS_DATA_DIR=../shared/data python benchmarks/defense_overhead.py \
        --out results/defense_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from mialens.audit.config import load_config
from mialens.audit.models import train_one
from mialens.audit.runner import prepare_audit
from mialens.defenses.apply import fit_per_model, random_inputs
from mialens.defenses.config import DefenseSpec
from mialens.defenses.evaluate import defended_config
from mialens.defenses.output import build_output_defense
from mialens.models.training import predict_logits

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "defenses_location30.yaml"


def training_cost(config, spec: DefenseSpec, models: int) -> dict:
    """Seconds per model and test accuracy of the first ``models`` models of ``spec``."""
    setup = prepare_audit(defended_config(config, spec), spec)
    plan, ds = setup.plan, setup.dataset
    x_test, y_test = ds.x[setup.split.test], ds.y[setup.split.test]
    seconds, accuracy = [], []
    for k in range(models):
        start = time.perf_counter()
        result = train_one(plan, k)
        seconds.append(time.perf_counter() - start)
        model = plan.build()
        model.load_state_dict(result.state_dict)
        accuracy.append(float((predict_logits(model, x_test).argmax(1) == y_test).mean()))
    return {"seconds_per_model": float(np.mean(seconds)), "test_acc": float(np.mean(accuracy))}


def answer_cost(config, spec: DefenseSpec, repeats: int) -> dict:
    """Microseconds per released answer of an output defence fitted on model 0."""
    setup = prepare_audit(defended_config(config, spec))
    plan, ds, split = setup.plan, setup.dataset, setup.split
    model = plan.build()
    model.load_state_dict(train_one(plan, 0).state_dict)
    members = plan.train_positions[0]
    noise = random_inputs(ds.x[split.pool], 1000, 0)
    (defense,) = fit_per_model(
        build_output_defense(spec.output),
        member_logits=[predict_logits(model, ds.x[members])],
        member_labels=[ds.y[members]],
        nonmember_logits=[predict_logits(model, ds.x[split.validation])],
        random_logits=[predict_logits(model, noise)],
    )
    queries = predict_logits(model, ds.x[split.test])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        defense.apply(queries)
        best = min(best, time.perf_counter() - start)
    return {"microseconds_per_answer": 1e6 * best / len(queries), "answers": len(queries)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2, help="models trained per defence")
    parser.add_argument("--repeats", type=int, default=3, help="timings of each output defence")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(EXAMPLE)
    specs = [DefenseSpec(name="undefended"), *config.defenses.evaluate]
    training_cost(config, specs[0], 1)  # warm-up: first-call costs of torch and the data
    rows: dict[str, dict] = {}
    for spec in specs:
        if spec.output is not None:
            rows[spec.name] = {"kind": "inference-time", **answer_cost(config, spec, args.repeats)}
        else:
            rows[spec.name] = {"kind": "training", **training_cost(config, spec, args.models)}
        print(spec.name, rows[spec.name], flush=True)
    again = training_cost(config, specs[0], args.models)["seconds_per_model"]
    base = min(rows["undefended"]["seconds_per_model"], again)
    rows["undefended"]["seconds_per_model"] = base
    for row in rows.values():
        if row["kind"] == "training":
            row["overhead"] = row["seconds_per_model"] / base
    result = {
        "benchmark": "defense_overhead",
        "models_per_defense": args.models,
        "torch_threads": args.threads,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "defenses": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\n{'defence':32} {'s/model':>9} {'overhead':>9} {'test acc':>9} {'us/answer':>10}")
    for name, r in rows.items():
        if r["kind"] == "training":
            print(
                f"{name:32} {r['seconds_per_model']:9.2f} {r['overhead']:9.2f} {r['test_acc']:9.3f}"
            )
        else:
            print(f"{name:32} {'':9} {'':9} {'':9} {r['microseconds_per_answer']:10.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
