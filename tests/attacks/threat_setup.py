"""A tiny, seeded, leaky audit for the query-attack tests (trained once per session).

Four small MLPs are trained on complementary halves of a pool (every sample is a member
of exactly two), on noisy Gaussian blobs (tabular) or on a few hundred digits (images);
they over-fit, so every attack family must beat chance on them. Attacks are scored
through the audit engine, exactly as ``mialens audit`` does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from mialens.attacks.base import Attack, QueryData
from mialens.attacks.networks import single_thread
from mialens.audit.engine import ModelOutputs, score_targets
from mialens.data.catalog import load_dataset
from mialens.data.registry import DatasetConfig
from mialens.metrics import auc, tpr_at_fpr
from mialens.models.architectures import ModelConfig, build_model
from mialens.models.recipe import TrainConfig
from mialens.models.training import train_model
from mialens.splits import keep_mask
from mialens.targets.adapters import TorchTarget

RECIPE = TrainConfig(epochs=60, batch_size=16, lr=3e-3)


@dataclass
class LeakySetup:
    models: list[TorchTarget]
    member: np.ndarray
    data: QueryData
    outputs: ModelOutputs
    num_classes: int


def blobs(n: int, seed: int, classes: int = 4, features: int = 40, noise: float = 0.3):
    g = np.random.default_rng(seed)
    centers = np.random.default_rng(1234).normal(0, 0.6, size=(classes, features))
    y = g.integers(classes, size=n)
    x = centers[y] + g.normal(0, 1.0, size=(n, features))
    flip = g.random(n) < noise
    y = np.where(flip, g.integers(classes, size=n), y)
    return x.astype(np.float32), y.astype(np.int64)


@functools.cache
def leaky_setup(kind: str = "tabular", models: int = 4) -> LeakySetup:
    if kind == "tabular":
        x, y = blobs(360, seed=0)
        pool_x, pool_y, pop_x, pop_y = x[:160], y[:160], x[160:], y[160:]
        classes, shape = 4, (40,)
    else:
        digits = load_dataset(DatasetConfig(name="digits"))
        order = np.random.default_rng(0).permutation(len(digits))
        pool, pop = order[:160], order[160:400]
        pool_x, pool_y = digits.x[pool], digits.y[pool]
        pop_x, pop_y = digits.x[pop], digits.y[pop]
        classes, shape = 10, digits.input_shape
    config = ModelConfig(arch="mlp", hidden=[64])

    def build():
        return build_model(config, shape, classes)

    def train(xs, ys, seed):
        result = train_model(build, xs, ys, RECIPE, seed)
        net = build()
        net.load_state_dict(result.state_dict)
        return TorchTarget(net.eval(), classes)

    keep = keep_mask(models, len(pool_y), seed=0)
    with single_thread():
        targets = [train(pool_x[keep[k]], pool_y[keep[k]], 100 + k) for k in range(models)]
    outputs = ModelOutputs(
        logits=np.stack([t.logits(pool_x) for t in targets]),
        member=keep,
        labels=pool_y,
        population_logits=np.stack([t.logits(pop_x) for t in targets]),
        population_labels=pop_y,
    )
    for t in targets:
        t.queries = 0
    data = QueryData(pool_x, pool_y, pop_x, pop_y, train, build, seed=0)
    return LeakySetup(targets, keep, data, outputs, classes)


def evaluate(attack: Attack, setup: LeakySetup, targets=(0, 1)) -> dict:
    """Mean AUC and TPR at 10% FPR over ``targets``, queries per sample, and the attack's
    ``extra()`` diagnostics per target."""
    scored = score_targets([attack], setup.outputs, list(targets), setup.models, setup.data)
    scores = scored.scores[attack.name]
    members = setup.member[list(targets)]
    return {
        "auc": float(np.mean([auc(s, m) for s, m in zip(scores, members, strict=True)])),
        "tpr10": float(
            np.mean([tpr_at_fpr(s, m, 0.1) for s, m in zip(scores, members, strict=True)])
        ),
        "queries": scored.queries_per_sample[attack.name],
        "extras": scored.extras.get(attack.name, []),
    }


def assert_trained_to_convergence(extras: list[dict]) -> None:
    """Every target's attack model stopped on its held-out loss, before the cap."""
    assert extras
    for extra in extras:
        record = extra["attack_training"]
        assert record["converged"] and 1 <= record["epochs"] <= record["epochs_run"]


def loss_baseline(setup: LeakySetup, targets=(0, 1)) -> dict[str, float]:
    from mialens.attacks.threshold import LossAttack

    return evaluate(LossAttack(), setup, targets)
