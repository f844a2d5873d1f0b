"""Canaries: injection into the pool, membership of half the models, their leakage."""

import numpy as np
import pytest

from mialens.audit.canaries import CanaryConfig, canary_metrics, inject_canaries
from mialens.audit.design import prepare_audit
from mialens.data.catalog import load_dataset
from mialens.errors import ConfigError
from mialens.metrics.leakage import PooledLevel
from mialens.splits import keep_mask
from mialens.workflows.config import validate_config


def test_mislabel_canaries_replace_pool_samples():
    digits = load_dataset("digits")
    pool = np.random.default_rng(0).permutation(len(digits))[:500]
    data, mask = inject_canaries(digits, pool, CanaryConfig(fraction=0.04), seed=3)
    assert mask.sum() == 20
    changed = pool[mask]
    assert (data.y[changed] != digits.y[changed]).all()
    np.testing.assert_array_equal(data.x, digits.x)
    untouched = np.setdiff1d(np.arange(len(digits)), changed)
    np.testing.assert_array_equal(data.y[untouched], digits.y[untouched])
    assert list(data.ids[changed][:1]) == [f"canary-mislabel-{digits.ids[changed][0]}"]
    np.testing.assert_array_equal(np.char.startswith(data.ids[pool], "canary-"), mask)
    assert data.fingerprint != digits.fingerprint
    again, _ = inject_canaries(digits, pool, CanaryConfig(fraction=0.04), seed=3)
    assert again.fingerprint == data.fingerprint  # deterministic


def test_ood_canaries_shuffle_features():
    digits = load_dataset("digits")
    pool = np.arange(200)
    data, mask = inject_canaries(digits, pool, CanaryConfig(kind="ood", fraction=0.05), seed=0)
    changed = pool[mask]
    assert len(changed) == 10
    for i in changed:
        np.testing.assert_array_equal(np.sort(data.x[i].ravel()), np.sort(digits.x[i].ravel()))
    assert not np.array_equal(data.x[changed], digits.x[changed])
    assert all(str(v).startswith("canary-ood-") for v in data.ids[changed])


def test_too_few_canaries_is_an_error():
    with pytest.raises(ConfigError, match="gives no canary"):
        inject_canaries(load_dataset("digits"), np.arange(20), CanaryConfig(fraction=0.01), 0)


def test_prepare_audit_makes_every_canary_in_for_half_the_models():
    config = validate_config(
        {
            "dataset": {"name": "digits"},
            "audit": {"num_models": 6, "pool_size": 300, "canaries": {"fraction": 0.1}},
        }
    )
    setup = prepare_audit(config)
    assert setup.canaries.sum() == 30
    assert (setup.keep[:, setup.canaries].sum(axis=0) == 3).all()
    ids = setup.dataset.ids[setup.split.pool]
    np.testing.assert_array_equal(np.char.startswith(ids, "canary-"), setup.canaries)
    plain = prepare_audit(validate_config({"dataset": {"name": "digits"}}))
    assert plain.canaries is None


def test_canary_metrics_by_hand():
    members = keep_mask(4, 200, seed=0)
    canary = np.arange(200) < 20
    scores = np.tile(np.linspace(0, 1, 200), (4, 1))  # natural samples: no signal
    scores[:, canary] = np.where(members[:, canary], 5.0, -5.0)  # canaries: perfect leak
    out = canary_metrics(scores, members, canary, [0.1, 0.01])
    assert out.count == 20
    assert out.auc == 1.0
    assert out.n_members == 40 and out.n_nonmembers == 40
    assert out.tpr_at_fpr[0.1] == PooledLevel(value=1.0, resolved=True)
    assert out.tpr_at_fpr[0.01].resolved is False
    assert out.global_threshold[0.01].canaries == 1.0
    assert out.global_threshold[0.01].natural < 0.1
    assert out.to_json()["pooled"]["tpr_at_fpr"]["0.1"] == {"value": 1.0, "resolved": True}
