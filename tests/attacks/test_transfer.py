"""Transfer attack (Li & Zhang 2021): a shadow trained on data relabelled by the target."""

import numpy as np
import pytest
from threat_setup import evaluate, leaky_setup

from mialens.attacks.base import QueryData
from mialens.attacks.transfer import TransferAttack
from mialens.errors import DataError
from mialens.targets import CallableTarget, LabelOnlyTarget

SHADOW_LOGITS = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, -1.0]])


def test_shadow_trains_on_relabelled_population_and_scores_its_loss():
    x = np.arange(4, dtype=np.float32)[:, None]
    y = np.array([0, 1, 1, 0])
    pop_x = np.array([[-1.0], [2.0], [3.0], [-4.0]], np.float32)
    pop_y = np.array([1, 1, 1, 1])
    seen = {}

    def train_model(xs, ys, seed):
        seen["x"], seen["y"] = xs, ys
        return CallableTarget(lambda b: SHADOW_LOGITS[b[:, 0].astype(int)], 2, output="logits")

    target = LabelOnlyTarget(
        CallableTarget(lambda b: np.stack([-b[:, 0], b[:, 0]], 1), 2, output="logits")
    )
    data = QueryData(x, y, pop_x, pop_y, train_model=train_model, seed=0)
    scores = TransferAttack().fit().prepare(target, data).score(target, data)
    # half as many shadow samples as audited samples, labelled by the target (x > 0 -> 1)
    np.testing.assert_array_equal(seen["x"], pop_x[:2])
    np.testing.assert_array_equal(seen["y"], [0, 1])
    assert target.queries == 2  # the candidates themselves are never queried
    z = SHADOW_LOGITS.astype(np.float32).astype(np.float64)  # the adapter returns float32
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    np.testing.assert_allclose(scores, logp[np.arange(4), y], rtol=1e-6)
    conf = TransferAttack(statistic="confidence", shadow_size=4).fit().prepare(target, data)
    conf = conf.score(target, data)
    np.testing.assert_allclose(conf, np.exp(logp[np.arange(4), y]), rtol=1e-6)


def test_needs_a_training_recipe():
    data = QueryData(np.zeros((2, 1), np.float32), np.array([0, 1]), np.zeros((2, 1)), np.zeros(2))
    with pytest.raises(DataError, match="recipe"):
        TransferAttack().fit().prepare(LabelOnlyTarget(CallableTarget(lambda b: b, 1)), data)


def test_transfer_on_a_leaky_setup():
    result = evaluate(TransferAttack(), leaky_setup("tabular"))
    assert result["auc"] > 0.55
    assert result["queries"] == pytest.approx(0.5)
