"""Cost of every defence of the Location30 defence example, measured side by side.

``mialens defend`` reports the training seconds recorded when each model was trained,
which mixes runs made under different machine load when models come from the cache.
This benchmark trains the first ``--models`` models of every training-time and
sample-aware defence one by one on one torch thread, after a warm-up model, with the
undefended recipe timed before and after the others (its faster pass is the baseline),
and times every output defence on the same logits (fastest of ``--repeats``); it
records seconds per model, the overhead against the undefended recipe, test accuracy,
and microseconds per released answer. ``--batches`` also times every output defence per
answer at each query batch size (the boundary attack queries a few hundred points at a
time) and per label answer through the label-only view of the defended target (what
label-only attacks pay); ``--defenses`` restricts the run to the named defences. Needs
Location30 (``$MIALENS_DATA_DIR``).

    MIALENS_DATA_DIR=../shared/data python benchmarks/defense_overhead.py \
        --out results/defense_overhead.json
    MIALENS_DATA_DIR=../shared/data python benchmarks/defense_overhead.py \
        --defenses memguard --batches 1 188 4000 --out results/memguard_batches.json
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

from mialens.audit.design import prepare_audit
from mialens.audit.training_plan import train_one
from mialens.defenses.apply import DefendedTarget, fit_per_model, random_inputs
from mialens.defenses.config import DefenseSpec
from mialens.defenses.output import build_output_defense
from mialens.defenses.sample_aware import adjusted_setup
from mialens.models.training import predict_logits
from mialens.targets.adapters import TorchTarget, restrict
from mialens.workflows.config import load_config
from mialens.workflows.defend import defended_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "defenses_location30.yaml"


def training_cost(config, spec: DefenseSpec, models: int) -> dict:
    """Seconds per model and test accuracy of the first ``models`` models of ``spec``."""
    setup = prepare_audit(defended_config(config, spec))
    if spec.sample_aware is not None:
        setup = adjusted_setup(setup, spec.sample_aware)
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


def answer_cost(config, spec: DefenseSpec, repeats: int, batches: list[int]) -> dict:
    """Microseconds per released answer of an output defence fitted on model 0: on the
    whole test set at once, and per query batch size in ``batches`` (released answers
    and, through the label-only view of the defended target, labels)."""
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
    row = {"microseconds_per_answer": _per_answer(defense.apply, queries, repeats)}
    row["answers"] = len(queries)
    labels = restrict(DefendedTarget(TorchTarget(model), defense), "label").labels
    x_test = ds.x[split.test]
    row["batches"] = {
        str(b): {
            "microseconds_per_answer": _per_answer(defense.apply, queries[:b], repeats),
            "microseconds_per_label": _per_answer(labels, x_test[:b], repeats),
        }
        for b in batches
    }
    return row


def _per_answer(fn, batch: np.ndarray, repeats: int) -> float:
    """Microseconds of CPU time per row of ``fn(batch)``, the fastest of ``repeats`` calls
    (CPU time of this process: other load on the machine does not count)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn(batch)
        best = min(best, time.process_time() - start)
    return 1e6 * best / len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2, help="models trained per defence")
    parser.add_argument("--repeats", type=int, default=3, help="timings of each output defence")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--batches", type=int, nargs="*", default=[], help="query batch sizes")
    parser.add_argument("--defenses", nargs="*", help="only these defences (default: all)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(EXAMPLE)
    specs = [DefenseSpec(name="undefended"), *config.defenses.evaluate]
    if args.defenses:
        specs = [s for s in specs if s.name in args.defenses]
    trains = any(s.output is None for s in specs)
    if trains and specs[0].name != "undefended":
        specs.insert(0, DefenseSpec(name="undefended"))  # the baseline of the overheads
    training_cost(config, specs[0], 1)  # warm-up: first-call costs of torch and the data
    rows: dict[str, dict] = {}
    for spec in specs:
        if spec.output is not None:
            cost = answer_cost(config, spec, args.repeats, args.batches)
            rows[spec.name] = {"kind": "inference-time", **cost}
        else:
            rows[spec.name] = {"kind": "training", **training_cost(config, spec, args.models)}
        print(spec.name, rows[spec.name], flush=True)
    if trains:
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
            for b, t in r["batches"].items():
                answer, label = t["microseconds_per_answer"], t["microseconds_per_label"]
                print(f"  batch {b:>6}: {answer:10.1f} us/answer {label:10.1f} us/label")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
