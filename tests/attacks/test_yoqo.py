"""YOQO (Wu et al. 2024): one crafted query per sample."""

import numpy as np
import torch
from threat_setup import evaluate, leaky_setup
from torch import nn

from mialens.attacks.base import QueryData, QueryReferences
from mialens.attacks.yoqo import YOQOAttack, YOQOParams, craft_queries
from mialens.targets import LabelOnlyTarget, TorchTarget


def step(at: float) -> nn.Module:
    """1-D two-class model predicting class 0 below ``at`` and class 1 above."""
    net = nn.Linear(1, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.0], [10.0]]))
        net.bias.copy_(torch.tensor([0.0, -10.0 * at]))
    return net.eval()


def test_crafted_query_lands_between_the_in_and_out_boundaries():
    # the IN model (trained on x) keeps class 0 up to 2, the OUT model only up to 1: the
    # sweet spot is (1, 2), where only a model that trained on x still says 0
    x = np.array([[0.0]], np.float32)
    member = np.array([[True], [False]])
    params = YOQOParams(steps=200, lr=0.01)
    crafted, reached = craft_queries(
        [step(2.0), step(1.0)], member, x, np.array([0]), params, (-5, 5)
    )
    assert reached[0] and 1.0 < crafted[0, 0] < 2.0


def test_samples_without_in_models_fall_back_to_the_offline_objective():
    # sample 0 has an IN model, sample 1 none: online, sample 1 is crafted exactly as the
    # offline variant crafts it (OUT loss plus the L2 penalty), sample 0 differently
    x = np.array([[0.0], [0.0]], np.float32)
    y = np.zeros(2, np.int64)
    member = np.array([[True, False], [False, False]])
    modules = [step(2.0), step(1.0)]
    online, _ = craft_queries(modules, member, x, y, YOQOParams(steps=30, penalty=5.0), (-5, 5))
    offline, _ = craft_queries(
        modules, member, x, y, YOQOParams(steps=30, penalty=5.0, online=False), (-5, 5)
    )
    assert online[1, 0] == offline[1, 0]
    assert online[0, 0] != offline[0, 0]


def test_one_query_per_sample_and_binary_scores():
    x = np.array([[0.0], [0.5], [-4.0], [4.0]], np.float32)
    y = np.zeros(4, np.int64)
    refs = QueryReferences(
        [TorchTarget(step(2.0), 2), TorchTarget(step(1.0), 2)],
        np.array([[True] * 4, [False] * 4]),
        QueryData(x, y),
    )
    attack = YOQOAttack(steps=200, lr=0.01).fit(refs)
    in_like = LabelOnlyTarget(TorchTarget(step(2.0), 2))
    out_like = LabelOnlyTarget(TorchTarget(step(1.0), 2))
    data = QueryData(x, y)
    attack.prepare(in_like, data)  # crafts the queries on the reference models
    assert in_like.queries == 0
    assert attack.score(in_like, data)[:2].tolist() == [1.0, 1.0]
    assert attack.score(out_like, data)[:2].tolist() == [0.0, 0.0]
    assert in_like.queries == out_like.queries == 4


def test_yoqo_on_a_leaky_setup():
    result = evaluate(YOQOAttack(), leaky_setup("tabular"))
    assert result["auc"] > 0.7
    assert result["queries"] == 1.0
