"""Output defences in front of models: batches end to end, label queries."""

import numpy as np
import pytest

from mialens.defenses.apply import DefendedTarget, defend_logits, fit_per_model
from mialens.defenses.output import DefenderData, build_output_defense
from mialens.targets.adapters import CallableTarget, restrict

W = np.random.default_rng(0).normal(0, 2, (6, 4))


def model():
    return CallableTarget(lambda x: x @ W, num_classes=4)


def fitted(spec):
    z = np.random.default_rng(1).normal(0, 3, (200, 4))
    data = DefenderData(z, z.argmax(1), z * 0.3, np.random.default_rng(2).normal(0, 1, z.shape))
    return build_output_defense(spec).fit(data)


@pytest.mark.parametrize("spec", [{"name": "memguard", "steps": 20}, "hamp_output", "top_k"])
def test_label_queries_to_label_preserving_defences_skip_the_defence(spec, monkeypatch):
    x = np.random.default_rng(3).normal(size=(50, 6)).astype(np.float32)
    defense = fitted(spec)
    released = DefendedTarget(model(), fitted(spec)).logits(x).argmax(axis=1)
    monkeypatch.setattr(defense, "apply", lambda z: pytest.fail("the defence ran"))
    view = restrict(DefendedTarget(model(), defense), "label")
    np.testing.assert_array_equal(view.labels(x), released)
    assert view.queries == 50 and view.inner.queries == 50


def test_label_queries_to_other_defences_go_through_the_defence():
    x = np.random.default_rng(3).normal(size=(50, 6)).astype(np.float32)
    target = DefendedTarget(model(), fitted({"name": "rounding", "decimals": 0}))
    labels = restrict(target, "label").labels(x)
    np.testing.assert_array_equal(labels, target.logits(x).argmax(axis=1))
    assert target.queries == 100  # the label query was answered by the defence


def test_defend_logits_is_one_batch_per_model_in_query_order():
    logits = np.random.default_rng(4).normal(0, 3, (2, 30, 3, 4)).astype(np.float32)
    spec = {"name": "memguard", "steps": 20}
    z = np.random.default_rng(1).normal(0, 3, (200, 4))
    defenses = fit_per_model(build_output_defense(spec), [z, z], [z.argmax(1)] * 2, [z, z], [z, z])
    out, per_answer = defend_logits(defenses, logits)
    again = fit_per_model(build_output_defense(spec), [z, z], [z.argmax(1)] * 2, [z, z], [z, z])
    for k in range(2):
        for q in range(3):  # query by query, as the answers are drawn
            np.testing.assert_allclose(out[k, :, q], again[k].apply(logits[k, :, q]), atol=1e-6)
    assert per_answer > 0
