"""Label-only boundary distance: mialens' batched search against IBM ART's.

Trains one MLP on Location30 (or digits) with mialens' trainer, picks the same
members and non-members, and estimates every sample's distance to the decision
boundary twice with the same label-query budget per sample:

* ART's ``LabelOnlyDecisionBoundary.infer`` (HopSkipJump, one sample at a time), whose
  queries are counted by wrapping its ``PyTorchClassifier``;
* mialens' :class:`mialens.attacks.boundary.BoundaryAttack` search, batched over all
  samples, with ``max_queries`` set to the mean number of queries ART made per sample.

Both searches are random, so each runs ``--repeats`` times (seeds ``seed``,
``seed + 1``, ...). Writes the mean ``auc_ours``, ``auc_art``, ``seconds_ours`` and
``seconds_art`` (with the per-repeat AUCs, query counts and settings) to the JSON
file given by ``--out``. ART is needed for this
benchmark only; it is not a dependency of mialens:

    pip install adversarial-robustness-toolbox
    python benchmarks/label_only_vs_art.py --out results/label_only_vs_art.json

Both run with the same number of torch threads (``--threads``, default 1, which is what
mialens' attacks use) on the same model, samples and budget.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from mialens.attacks.base import QueryData
from mialens.attacks.boundary import BoundaryAttack
from mialens.data.catalog import load_dataset
from mialens.data.registry import DatasetConfig
from mialens.errors import MialensError
from mialens.models.architectures import ModelConfig, build_model
from mialens.models.recipe import TrainConfig
from mialens.models.training import train_model
from mialens.targets.adapters import LabelOnlyTarget, TorchTarget


def require_art():
    try:
        import art  # noqa: F401
        from art.attacks.inference.membership_inference import LabelOnlyDecisionBoundary
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        sys.exit(
            "this benchmark compares against IBM ART, which is not installed (it is not a "
            "mialens dependency): pip install adversarial-robustness-toolbox"
        )
    return LabelOnlyDecisionBoundary, PyTorchClassifier


def load(name: str):
    try:
        return load_dataset(DatasetConfig(name=name))
    except MialensError as exc:
        sys.exit(f"cannot load {name}: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--dataset", default="location30", choices=["location30", "digits"])
    parser.add_argument("--samples", type=int, default=500, help="members + non-members")
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--max-iter", type=int, default=10, help="ART HopSkipJump iterations")
    parser.add_argument("--init-eval", type=int, default=20)
    parser.add_argument("--max-eval", type=int, default=100)
    parser.add_argument("--init-size", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats", type=int, default=5, help="runs of both searches with seeds seed, seed+1, ..."
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads for both (mialens attacks use 1)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    LabelOnlyDecisionBoundary, PyTorchClassifier = require_art()

    ds = load(args.dataset)
    g = np.random.default_rng(args.seed)
    order = g.permutation(len(ds))
    train = order[: args.train_size]
    half = args.samples // 2
    rest = order[args.train_size :]
    picked = np.concatenate([train[:half], rest[:half]])
    member = np.arange(len(picked)) < half
    x = np.ascontiguousarray(ds.x[picked], dtype=np.float32)
    y = ds.y[picked]

    config = ModelConfig(arch="mlp", hidden=[256])

    def build():
        return build_model(config, ds.input_shape, ds.num_classes)

    result = train_model(
        build, ds.x[train], ds.y[train], TrainConfig(epochs=args.epochs), args.seed
    )
    model = build()
    model.load_state_dict(result.state_dict)
    model.eval()
    box = (float(ds.x.min()), float(ds.x.max()))

    class CountingClassifier(PyTorchClassifier):
        queries = 0

        def predict(self, x, batch_size=128, training_mode=False, **kwargs):
            CountingClassifier.queries += len(x)
            # HopSkipJump's interpolations come out as float64; the model is float32
            x = np.asarray(x, dtype=np.float32)
            return super().predict(x, batch_size=batch_size, training_mode=training_mode, **kwargs)

    estimator = CountingClassifier(
        model=model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=ds.input_shape,
        nb_classes=ds.num_classes,
        clip_values=box,
    )
    auc_art, seconds_art, auc_ours, seconds_ours, ours_queries = [], [], [], [], []
    budget = None
    for rep in range(args.repeats):
        seed = args.seed + rep
        art_attack = LabelOnlyDecisionBoundary(estimator, distance_threshold_tau=1e-9)
        np.random.seed(seed)  # noqa: NPY002 - ART draws from numpy's global generator
        CountingClassifier.queries = 0
        start = time.perf_counter()
        probs = art_attack.infer(
            x,
            y,
            probabilities=True,
            max_iter=args.max_iter,
            max_eval=args.max_eval,
            init_eval=args.init_eval,
            init_size=args.init_size,
            verbose=False,
        )
        seconds_art.append(time.perf_counter() - start)
        p = np.clip(probs[:, 1].astype(np.float64), 1e-300, 1 - 1e-16)
        auc_art.append(roc_auc_score(member, np.log(p) - np.log1p(-p)))  # distance - tau
        if budget is None:  # ours gets as many queries per sample as ART made
            art_queries = CountingClassifier.queries / len(x)
            budget = int(np.floor(art_queries))

        attack = BoundaryAttack(
            max_queries=budget,
            init_eval=args.init_eval,
            max_eval=args.max_eval,
            init_tries=args.init_size,
            calibration="none",
        ).fit()
        target = LabelOnlyTarget(TorchTarget(model, ds.num_classes))
        start = time.perf_counter()
        ours = attack.score(target, QueryData(x, y, seed=seed))
        seconds_ours.append(time.perf_counter() - start)
        auc_ours.append(roc_auc_score(member, ours))
        ours_queries.append(target.queries / len(x))

    report = {
        "dataset": args.dataset,
        "samples": len(x),
        "repeats": args.repeats,
        "auc_ours": float(np.mean(auc_ours)),
        "auc_art": float(np.mean(auc_art)),
        "seconds_ours": float(np.mean(seconds_ours)),
        "seconds_art": float(np.mean(seconds_art)),
        "speedup": float(np.mean(seconds_art) / np.mean(seconds_ours)),
        "auc_ours_per_repeat": [float(v) for v in auc_ours],
        "auc_art_per_repeat": [float(v) for v in auc_art],
        "queries_per_sample_ours": float(np.mean(ours_queries)),
        "queries_per_sample_art": art_queries,
        "max_queries_ours": budget,
        "art_settings": {
            "max_iter": args.max_iter,
            "init_eval": args.init_eval,
            "max_eval": args.max_eval,
            "init_size": args.init_size,
        },
        "train_accuracy": float(
            (model(torch.as_tensor(ds.x[train])).argmax(1).numpy() == ds.y[train]).mean()
        ),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
