"""Chunked scoring and the on-disk signal store: same scores however samples are chunked."""

import numpy as np
import pytest

from mialens.attacks import DEFAULT_ATTACKS, ReferenceSignals, TargetSignals, build_attack
from mialens.audit.engine import ModelOutputs, chunk_samples, score_targets
from mialens.errors import DataError
from mialens.signals.statistics import rescaled_logit
from mialens.signals.store import SAMPLE_BLOCK, SignalStore, block_sums, exact_total
from mialens.splits import keep_mask

ATTACKS = [*DEFAULT_ATTACKS, {"name": "lira_online", "variance": "per_example"}]


def leaky(num_models=6, n=3 * SAMPLE_BLOCK + 123, z=500, queries=2, classes=3, seed=0):
    """Logits whose true-class margin is difficulty + membership + noise, several views."""
    rng = np.random.default_rng(seed)
    member = keep_mask(num_models, n, seed)
    labels = rng.integers(0, classes, n)
    difficulty = rng.normal(0, 2, n)
    logits = rng.normal(0, 1, (num_models, n, queries, classes)).astype(np.float32)
    margin = difficulty[None, :, None] + member[:, :, None] + rng.normal(0, 0.5, logits.shape[:3])
    logits[np.arange(num_models)[:, None], np.arange(n), :, labels] += margin
    pop_labels = rng.integers(0, classes, z)
    pop = rng.normal(0, 1, (num_models, z, queries, classes)).astype(np.float32)
    pop_margin = rng.normal(0, 2, z)[None, :, None] + rng.normal(0, 0.5, pop.shape[:3])
    pop[np.arange(num_models)[:, None], np.arange(z), :, pop_labels] += pop_margin
    return ModelOutputs(logits, member, labels, pop, pop_labels)


def _attacks():
    return [build_attack(spec) for spec in ATTACKS]


def test_chunked_scores_equal_unchunked_scores_exactly():
    outputs = leaky()
    targets = [0, 3, 5]
    whole = score_targets(_attacks(), outputs, targets, chunk_size=4 * SAMPLE_BLOCK).scores
    steps = []
    chunked = score_targets(
        _attacks(), outputs, targets, chunk_size=SAMPLE_BLOCK, on_step=lambda: steps.append(1)
    ).scores
    assert len(steps) == len(targets) * len(ATTACKS)
    for name in whole:
        np.testing.assert_array_equal(chunked[name], whole[name], err_msg=name)
        assert np.isfinite(whole[name]).all()


def test_lira_pooled_variance_is_chunking_invariant_and_matches_a_direct_fit():
    outputs = leaky(num_models=6)
    phi = rescaled_logit(outputs.logits, outputs.labels[None, :, None])
    others = [0, 1, 2, 3, 5]
    direct = build_attack("lira_online").fit(
        ReferenceSignals(phi[others], outputs.member[others], outputs.labels)
    )
    assert direct.variance_ == "global"
    expected = direct.score(TargetSignals(phi[4], outputs.labels))
    got = score_targets([build_attack("lira_online")], outputs, [4], chunk_size=SAMPLE_BLOCK)
    # the engine leaves the target out of sums over all models: equal up to rounding
    np.testing.assert_allclose(got.scores["lira_online"][0], expected, rtol=1e-12, atol=1e-12)
    # the pooled sum is exact: the plain float sum agrees to rounding
    values = np.random.default_rng(1).random(3 * SAMPLE_BLOCK + 7)
    assert exact_total([block_sums(values)]) == pytest.approx(values.sum(), rel=1e-14)
    split = [block_sums(values[:SAMPLE_BLOCK]), block_sums(values[SAMPLE_BLOCK:])]
    assert exact_total(split) == exact_total([block_sums(values)])


def _store(outputs, root, attacks):
    specs = [a.signal() for a in attacks]
    store = SignalStore.create(
        root,
        specs,
        outputs.member,
        outputs.labels,
        num_queries=outputs.logits.shape[2],
        population_labels=outputs.population_labels,
    )
    for k in range(outputs.num_models):  # one model at a time, as models finish
        store.add_logits(k, outputs.logits[k], outputs.population_logits[k])
    return SignalStore(root)  # reopened from disk


def test_signal_store_scores_match_in_memory_scores(tmp_path):
    outputs = leaky()
    attacks = _attacks()
    store = _store(outputs, tmp_path / "signals", attacks)
    assert store.values(attacks[0].signal()).dtype == np.float64
    assert np.load(tmp_path / "signals" / "loss.npy", mmap_mode="r").dtype == np.float32
    targets = [1, 4]
    on_disk = score_targets(_attacks(), store, targets, chunk_size=SAMPLE_BLOCK).scores
    again = score_targets(
        _attacks(), store, targets, chunk_size=2 * SAMPLE_BLOCK, scores_dir=tmp_path / "scores"
    ).scores
    assert isinstance(again["lira_online"], np.memmap)  # written chunk by chunk to disk
    assert (tmp_path / "scores" / "lira_online.npy").is_file()
    in_memory = score_targets(_attacks(), outputs, targets).scores
    for name in in_memory:
        np.testing.assert_array_equal(on_disk[name], again[name], err_msg=name)
        # float32 storage: the same scores up to the rounding of the signals
        corr = np.corrcoef(on_disk[name].ravel(), in_memory[name].ravel())[0, 1]
        assert corr > 0.9999, name
    np.testing.assert_allclose(on_disk["loss"], in_memory["loss"], rtol=1e-6, atol=1e-7)


def test_signal_store_rejects_missing_signals_and_bad_shapes(tmp_path):
    outputs = leaky(n=50, z=20)
    loss = build_attack("loss")
    store = _store(outputs, tmp_path / "s", [loss])
    with pytest.raises(DataError, match="not in the store"):
        score_targets([build_attack("lira_offline")], store, [0])
    with pytest.raises(DataError, match="shape"):
        store.write(0, loss.signal(), np.zeros((3, 2)), np.zeros((20, 2)))
    shape = (50, outputs.logits.shape[2])
    bad = np.zeros(shape)
    bad[3, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        store.write(0, loss.signal(), bad, np.zeros((20, shape[1])))
    with pytest.raises(DataError, match="infinite"):
        store.write(0, loss.signal(), np.full(shape, 1e300), np.zeros((20, shape[1])))
    with pytest.raises(DataError, match="out of range"):
        store.write(store.num_models, loss.signal(), np.zeros(shape), np.zeros((20, shape[1])))
    with pytest.raises(DataError, match="not a readable signal store"):
        SignalStore(tmp_path / "nothing")
    with pytest.raises(DataError, match="multiple of"):
        score_targets([loss], outputs, [0], chunk_size=1000)


def test_default_chunks_are_block_multiples_within_budget():
    assert chunk_samples(64, 10**6, 1) % SAMPLE_BLOCK == 0
    assert 64 * 8 * chunk_samples(64, 10**6, 1) <= 64 * 2**20
    assert chunk_samples(64, 10, 1) == SAMPLE_BLOCK
    assert chunk_samples(10**5, 10**6, 30) == SAMPLE_BLOCK  # never below one block
