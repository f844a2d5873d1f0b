"""Input-space canaries with independent inclusion bits (mialens.dp.canaries)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from mialens.dp.canaries import canary_ids, inclusion_bits, make_input_canaries
from mialens.errors import ConfigError
from mialens.seeding import rng


def _pool(n=300, d=6, classes=4, seed=0, binary=False):
    gen = np.random.default_rng(seed)
    x = (gen.random((n, d)) < 0.3) if binary else gen.normal(size=(n, d)) * np.arange(1, d + 1)
    ids = gen.permutation(10 * n)[:n] * 3 + 11  # shuffled, non-contiguous
    return x.astype(np.float32), gen.integers(0, classes, n), ids, classes


def test_inclusion_bits_are_the_seeded_uniform_draws_below_one_half():
    expected = rng(7, "canary-inclusion").random(12) < 0.5
    bits = inclusion_bits(12, seed=7)
    assert bits.dtype == bool and bits.shape == (12,)
    np.testing.assert_array_equal(bits, expected)
    np.testing.assert_array_equal(bits, inclusion_bits(12, seed=7))
    assert not np.array_equal(inclusion_bits(64, seed=7), inclusion_bits(64, seed=8))


def test_inclusion_bits_are_independent_fair_coins():
    bits = inclusion_bits(20_000, seed=1).astype(float)
    assert abs(bits.mean() - 0.5) < 4 * 0.5 / np.sqrt(20_000)
    # neighbours are uncorrelated; unlike complementary pairs, the count of IN is random
    assert abs(np.corrcoef(bits[:-1], bits[1:])[0, 1]) < 4 / np.sqrt(20_000)
    counts = [inclusion_bits(10, seed=s).sum() for s in range(200)]
    assert len(set(counts)) > 3


@pytest.mark.parametrize("count", [0, 1, -3, 2.5, True])
def test_too_few_canaries_are_refused(count):
    with pytest.raises(ConfigError, match="at least 2 canaries"):
        inclusion_bits(count, seed=0)
    with pytest.raises(ConfigError, match="at least 2 canaries"):
        make_input_canaries(*_pool(), kind="ood", count=count, seed=0)


def test_canary_ids_are_zero_padded_and_unique():
    assert list(canary_ids(3)) == ["canary-00000", "canary-00001", "canary-00002"]
    assert canary_ids(123_456)[-1] == "canary-123455"


def test_mislabeled_canaries_are_pool_samples_with_another_label():
    x, y, ids, classes = _pool()
    canaries = make_input_canaries(x, y, ids, classes, kind="mislabeled", count=40, seed=3)
    assert len(canaries) == 40 and canaries.kind == "mislabeled" and canaries.seed == 3
    position = {str(v): i for i, v in enumerate(ids)}
    sources = np.array([position[s] for s in canaries.source_ids])
    assert len(set(sources)) == 40
    np.testing.assert_array_equal(canaries.x, x[sources])
    assert (canaries.y != y[sources]).all() and ((canaries.y >= 0) & (canaries.y < classes)).all()
    np.testing.assert_array_equal(canaries.included, inclusion_bits(40, seed=3))


def test_more_mislabeled_canaries_than_the_pool_gives_are_refused():
    x, y, ids, classes = _pool(n=30)
    with pytest.raises(ConfigError, match="31 mislabeled canaries need 31 pool samples"):
        make_input_canaries(x, y, ids, classes, kind="mislabeled", count=31, seed=0)


def test_unknown_kind_is_refused():
    with pytest.raises(ConfigError, match="unknown canary kind 'poison'"):
        make_input_canaries(*_pool(), kind="poison", count=5, seed=0)


def test_ood_canaries_are_random_bits_on_binary_data_else_uniform_in_the_range():
    binary = make_input_canaries(*_pool(binary=True), kind="ood", count=500, seed=2)
    assert set(np.unique(binary.x)) == {0.0, 1.0}
    assert abs(binary.x.mean() - 0.5) < 0.02  # not the data's 30% density
    x, y, ids, classes = _pool()
    ood = make_input_canaries(x, y, ids, classes, kind="ood", count=500, seed=2)
    assert (ood.x >= x.min(0)).all() and (ood.x <= x.max(0)).all()
    assert ood.source_ids is None and set(np.unique(ood.y)) == set(range(classes))


def test_crafted_canaries_lie_at_the_pool_radius_in_its_least_varying_directions():
    gen = np.random.default_rng(5)
    x = gen.normal(size=(400, 20)) * np.r_[np.full(19, 3.0), 0.01]  # feature 19 barely varies
    x = x.astype(np.float32)
    canaries = make_input_canaries(
        x, gen.integers(0, 3, 400), np.arange(400) * 2 + 1, 3, kind="crafted", count=30, seed=1
    )
    mean = x.mean(0)
    offsets = canaries.x - mean
    radius = np.linalg.norm(x - mean, axis=1).max()
    np.testing.assert_allclose(np.linalg.norm(offsets, axis=1), radius, rtol=1e-4)
    # the subspace of the 16 smallest components contains the barely-varying feature
    assert np.abs(offsets[:, 19]).mean() > 10 * x[:, 19].std()
    assert len({tuple(np.round(row, 4)) for row in canaries.x}) == 30  # each its own pattern


def test_record_and_arrays_are_pickle_free():
    canaries = make_input_canaries(*_pool(), kind="mislabeled", count=6, seed=4)
    record = canaries.to_json()
    assert record["m"] == 6 and record["seed"] == 4 and record["kind"] == "mislabeled"
    assert record["inclusion_bits"] == "".join("1" if b else "0" for b in canaries.included)
    buf = io.BytesIO()
    np.savez(buf, **canaries.arrays())
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as saved:
        np.testing.assert_array_equal(saved["included"], canaries.included)
        np.testing.assert_array_equal(saved["source_ids"], canaries.source_ids)
        assert list(saved["ids"]) == list(canaries.ids)
