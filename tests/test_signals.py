"""Per-sample statistics: exact values and numerical stability."""

import math

import numpy as np
import pytest
from scipy.special import log_softmax

from mialens.errors import UnknownNameError
from mialens.signals.statistics import (
    compute_signal,
    confidence,
    correctness,
    entropy,
    hinge,
    log_probabilities,
    loss,
    modified_entropy,
    probability,
    rescaled_logit,
)

LOGITS = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 5.0], [1.0, 1.0, 1.0]])
LABELS = np.array([0, 2, 1])


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


P = softmax(LOGITS)
PY = P[np.arange(3), LABELS]


def test_loss_confidence_probability():
    np.testing.assert_allclose(loss(LOGITS, LABELS), -np.log(PY), rtol=1e-14)
    np.testing.assert_allclose(confidence(LOGITS, LABELS), PY, rtol=1e-14)
    assert confidence(LOGITS, LABELS)[2] == pytest.approx(1 / 3)
    # temperature 2: softmax(z / 2)
    np.testing.assert_allclose(
        probability(LOGITS, LABELS, temperature=2.0),
        softmax(LOGITS / 2)[np.arange(3), LABELS],
        rtol=1e-14,
    )


def test_entropy_and_modified_entropy_match_the_definitions():
    np.testing.assert_allclose(entropy(LOGITS), -(P * np.log(P)).sum(axis=1), rtol=1e-13)
    assert entropy(LOGITS)[2] == pytest.approx(math.log(3))
    expected = []
    for i, y in enumerate(LABELS):
        # Song & Mittal Eq. 3: -(1 - p_y) log p_y - sum_{j != y} p_j log(1 - p_j)
        others = sum(P[i, j] * math.log(1 - P[i, j]) for j in range(3) if j != y)
        expected.append(-(1 - P[i, y]) * math.log(P[i, y]) - others)
    np.testing.assert_allclose(modified_entropy(LOGITS, LABELS), expected, rtol=1e-12)


def test_modified_entropy_is_precise_for_confident_outputs():
    # p_y = 1 - 2e-30: the naive log(1 - p) of the wrong classes' partner underflows.
    z = np.array([[70.0, 0.0, 0.0]])
    eps = 2 * math.exp(-70)  # 1 - p_y, to first order
    # correct class: -(1 - p_y) log p_y ~ eps^2; wrong classes: -p_j log(1 - p_j) ~ p_j^2
    assert modified_entropy(z, np.array([0]))[0] == pytest.approx(
        eps * eps + eps * eps / 2, rel=1e-6
    )
    # wrong label: -(1 - p_1) log p_1 - p_0 log(1 - p_0) - p_2 log(1 - p_2) where
    # log(1 - p_0) = log(2 e^-70 / Z) must not be -inf
    value = modified_entropy(z, np.array([1]))[0]
    assert np.isfinite(value) and value == pytest.approx(70 + 70 - math.log(2), rel=1e-9)


def test_rescaled_logit_is_stable_and_exact():
    expected = np.log(PY / (1 - PY))
    np.testing.assert_allclose(rescaled_logit(LOGITS, LABELS), expected, rtol=1e-12)
    # p/(1-p) overflows in float64 for a 50-logit margin; the stable form stays exact
    z = np.array([[50.0, 0.0, 0.0], [0.0, 60.0, -1e4]])
    np.testing.assert_allclose(rescaled_logit(z, np.array([0, 0])), [50 - math.log(2), -60.0])


def test_hinge_and_correctness():
    np.testing.assert_array_equal(hinge(LOGITS, LABELS), [1.0, 5.0, 0.0])
    np.testing.assert_array_equal(correctness(LOGITS, LABELS), [1.0, 1.0, 0.0])


def test_labels_broadcast_over_models_and_queries():
    logits = np.stack([LOGITS[:, None, :]] * 2)  # (models=2, samples=3, queries=1, C)
    values = compute_signal("rescaled_logit", logits, LABELS[None, :, None])
    assert values.shape == (2, 3, 1)
    np.testing.assert_allclose(values[1, :, 0], rescaled_logit(LOGITS, LABELS))


def test_unknown_signal():
    with pytest.raises(UnknownNameError, match="Did you mean"):
        compute_signal("rescaled_logits", LOGITS, LABELS)


def test_probability_rejects_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        probability(LOGITS, LABELS, temperature=0.0)


def test_signals_import_nothing_from_the_layers_above():
    """signals sits below attacks: SignalSpec is defined here, not imported upwards."""
    import ast
    from pathlib import Path

    import mialens.signals

    above = ("mialens.attacks", "mialens.audit", "mialens.analysis", "mialens.defenses")
    for path in Path(mialens.signals.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = [
            node.module if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        ]
        assert not [m for m in imported if m and m.startswith(above)], path.name


def _modified_entropy_reference(logits, labels):
    """Song & Mittal Eq. 3 as mialens computed it with a fresh array per step."""
    from scipy.special import log_softmax, logsumexp

    logp = log_softmax(np.asarray(logits, dtype=np.float64) / 1.0, axis=-1)
    p = np.exp(logp)
    with np.errstate(divide="ignore"):
        log1m = np.log1p(-p)
    top = np.argmax(logp, axis=-1)[..., None]
    masked = logp.copy()
    np.put_along_axis(masked, top, -np.inf, axis=-1)
    np.put_along_axis(log1m, top, logsumexp(masked, axis=-1)[..., None], axis=-1)
    lab = np.broadcast_to(np.asarray(labels)[..., None], (*logp.shape[:-1], 1))
    logp_y = np.take_along_axis(logp, lab, axis=-1)[..., 0]
    log1m_y = np.take_along_axis(log1m, lab, axis=-1)[..., 0]
    others = np.arange(logp.shape[-1]) != np.asarray(labels)[..., None]
    return -np.exp(log1m_y) * logp_y - np.sum(np.where(others, p * log1m, 0.0), axis=-1)


def test_modified_entropy_in_place_equals_the_step_by_step_formula_bit_for_bit():
    gen = np.random.default_rng(11)
    logits = (gen.normal(size=(3, 50, 2, 7)) * [[[[1.0]]], [[[8.0]]], [[[40.0]]]]).astype(
        np.float32
    )
    labels = gen.permutation(np.arange(50) % 7)[None, :, None]  # broadcast over models, queries
    before = logits.copy()
    got = modified_entropy(logits, labels)
    assert got.tobytes() == _modified_entropy_reference(logits, labels).tobytes()
    np.testing.assert_array_equal(logits, before)  # the input is left as it was


def test_log_probabilities_at_temperature_one_skip_the_division_exactly():
    from scipy.special import log_softmax

    z = np.random.default_rng(2).normal(size=(4, 9, 5)) * 30
    assert log_probabilities(z).tobytes() == log_softmax(z / 1.0, axis=-1).tobytes()
    assert log_probabilities(z, 2.0).tobytes() == log_softmax(z / 2.0, axis=-1).tobytes()


@pytest.mark.parametrize(
    "logits",
    [
        np.random.default_rng(4).normal(size=(3, 50, 2, 10)) * 7,
        np.array([[1000.0, 1.0], [-np.inf, 0.0], [-np.inf, -np.inf], [np.inf, 1.0]]),
    ],
)
def test_log_probabilities_are_scipy_log_softmax_bit_for_bit(logits):
    with np.errstate(invalid="ignore", divide="ignore"):
        want = log_softmax(logits, axis=-1)
    with np.errstate(invalid="ignore"):
        got = log_probabilities(logits)
    np.testing.assert_array_equal(got, want)
