"""Per-token log-probabilities and Min-K%++ statistics: exact values, batching, cache."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mialens.errors import DataError
from mialens.models.causal_lm import CausalLMConfig, CausalTransformer
from mialens.models.store import ModelStore
from mialens.signals.token_logprobs import (
    cached_token_logprobs,
    compute_token_logprobs,
    models_token_logprobs,
    query_name,
    token_statistics,
)

LN2 = math.log(2)
CONFIG = CausalLMConfig(vocab_size=257, layers=1, width=16, heads=2, context=32)


def test_exact_statistics_on_hand_built_logits() -> None:
    logits = np.zeros((2, 3, 3))
    logits[0, 0] = np.log([0.5, 0.25, 0.25])  # predicts position 1 of row 0
    logits[0, 1] = [0.0, -np.inf, -np.inf]  # certain of token 0 (0 log 0 = 0)
    logits[1, 0] = [1.0, 1.0, 1.0]  # uniform
    tokens = np.array([[2, 1, 0], [0, 2, 7]])  # row 1 has 2 real tokens; 7 is padding
    stats = token_statistics(logits, tokens, np.array([3, 2]))
    np.testing.assert_allclose(stats.logprob, [[-2 * LN2, 0.0], [-math.log(3), 0.0]], rtol=1e-6)
    # mu = sum p log p; sigma^2 = sum p (log p - mu)^2 (Min-K%++, Zhang et al. 2024)
    np.testing.assert_allclose(stats.mean, [[-1.5 * LN2, 0.0], [-math.log(3), 0.0]], rtol=1e-6)
    np.testing.assert_allclose(stats.var, [[0.25 * LN2**2, 0.0], [0.0, 0.0]], atol=1e-7)
    assert stats.lengths.tolist() == [2, 1]
    assert stats.mask.tolist() == [[True, True], [True, False]]
    assert stats.logprob.dtype == np.float32


def _model(seed: int = 0) -> CausalTransformer:
    torch.manual_seed(seed)
    return CausalTransformer(CONFIG).eval()


def test_batches_give_the_numbers_of_one_pass(byte_corpus) -> None:
    tokens, lengths = byte_corpus
    model = _model()
    whole = compute_token_logprobs(model, tokens, lengths, 257, batch_size=len(tokens))
    batched = compute_token_logprobs(model, tokens, lengths, 257, batch_size=5)
    for field in ("logprob", "mean", "var"):
        np.testing.assert_allclose(getattr(batched, field), getattr(whole, field), atol=1e-5)
    assert np.all(whole.logprob[~whole.mask] == 0) and np.all(whole.logprob[whole.mask] < 0)
    with torch.no_grad():
        direct = torch.log_softmax(model(torch.as_tensor(tokens[:1])).double(), -1)
    first = direct[0, 0, tokens[0, 1]].item()  # log p(x_1 | start token)
    assert whole.logprob[0, 0] == pytest.approx(first, abs=1e-5)


def test_bad_inputs_are_refused_before_the_model_runs(byte_corpus) -> None:
    tokens, lengths = byte_corpus
    with pytest.raises(DataError, match="token ids must lie"):
        compute_token_logprobs(_model(), tokens, lengths, vocab_size=50)
    with pytest.raises(DataError, match="batch_size"):
        compute_token_logprobs(_model(), tokens, lengths, 257, batch_size=0)


def _stored_models(tmp_path, count: int) -> tuple[ModelStore, list[str]]:
    store = ModelStore(tmp_path / "models")
    keys = [f"lm{k}" for k in range(count)]
    for seed, key in enumerate(keys):
        store.save(key, _model(seed).state_dict(), {"arch": "causal-lm"})
    return store, keys


def test_a_second_call_reads_the_cache(tmp_path, byte_corpus) -> None:
    tokens, lengths = byte_corpus
    store, keys = _stored_models(tmp_path, 2)
    loads: list[str] = []

    def load(key: str) -> CausalTransformer:
        loads.append(key)
        model = CausalTransformer(CONFIG)
        model.load_state_dict(store.load(key)[0])
        return model

    first = models_token_logprobs(store, keys, load, tokens, lengths, 257)
    assert loads == keys and first.logprob.shape == (2, len(tokens), tokens.shape[1] - 1)
    second = models_token_logprobs(store, keys, load, tokens, lengths, 257)
    assert loads == keys  # no model was loaded or run again
    np.testing.assert_array_equal(second.var, first.var)
    assert not np.array_equal(first.logprob[0], first.logprob[1])
    other = query_name(tokens[:-1], lengths[:-1])
    assert other != query_name(tokens, lengths)  # another query set is another cache entry


def test_a_damaged_cache_is_recomputed(tmp_path, byte_corpus) -> None:
    tokens, lengths = byte_corpus
    store, keys = _stored_models(tmp_path, 1)
    model = _model(0)
    first = cached_token_logprobs(store, keys[0], lambda: model, tokens, lengths, 257)
    path = store.entry(keys[0]) / f"{query_name(tokens, lengths)}.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    calls = []
    again = cached_token_logprobs(
        store, keys[0], lambda: calls.append(1) or model, tokens, lengths, 257
    )
    assert calls == [1]
    np.testing.assert_array_equal(again.logprob, first.logprob)
