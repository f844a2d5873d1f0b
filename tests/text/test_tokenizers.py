"""Tokenizers: bytes, BPE trained locally, a Hugging Face folder, and padded encoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mialens.data.tokenizers import (
    BPETokenizer,
    ByteTokenizer,
    HFTokenizer,
    encode_padded,
    load_tokenizer,
)
from mialens.errors import ConfigError, DataError

pytest.importorskip("tokenizers")

CORPUS = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void.",
    "And God said, Let there be light: and there was light.",
] * 5


def test_bytes_round_trip_unicode() -> None:
    tok = ByteTokenizer()
    ids = tok.encode("Ωmega ✓")
    assert max(ids) < 256 and tok.vocab_size == 257 and tok.bos_id == 256
    assert tok.decode([tok.bos_id, *ids]) == "Ωmega ✓"


def test_bpe_trains_deterministically_saves_and_loads(tmp_path: Path) -> None:
    first, second = BPETokenizer.train(CORPUS, 300), BPETokenizer.train(CORPUS, 300)
    assert first.fingerprint == second.fingerprint
    text = "And God said, Let there be light."
    ids = first.encode(text)
    assert len(ids) < len(text.encode()) and first.decode(ids) == text
    first.save(tmp_path / "bpe.json")
    loaded = load_tokenizer(tmp_path / "bpe.json")
    assert isinstance(loaded, BPETokenizer)
    assert loaded.encode(text) == ids and loaded.fingerprint == first.fingerprint
    assert loaded.bos_id == first.bos_id and loaded.vocab_size == first.vocab_size <= 300


def test_bpe_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="vocab_size >= 257"):
        BPETokenizer.train(CORPUS, 100)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DataError, match="not a readable tokenizers JSON"):
        load_tokenizer(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="neither 'bytes'"):
        load_tokenizer(tmp_path / "missing.json")


def test_hf_tokenizer_from_a_local_folder(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    bpe = BPETokenizer.train(CORPUS, 300)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe.backend, bos_token="<s>")
    fast.save_pretrained(tmp_path / "tok")
    tok = load_tokenizer(tmp_path / "tok")
    assert isinstance(tok, HFTokenizer)
    assert tok.encode(CORPUS[0]) == bpe.encode(CORPUS[0]) and tok.bos_id == bpe.bos_id
    assert tok.decode(tok.encode(CORPUS[1])) == CORPUS[1]


def test_encode_padded_prepends_the_start_token_and_truncates(caplog) -> None:
    tok = ByteTokenizer()
    tokens, lengths = encode_padded(tok, ["ab", "abcdef", "a"], max_tokens=5)
    assert lengths.tolist() == [3, 5, 2]
    np.testing.assert_array_equal(
        tokens, [[256, 97, 98, 0, 0], [256, 97, 98, 99, 100], [256, 97, 0, 0, 0]]
    )
    assert "1 of 3 samples are longer than 5 tokens" in caplog.text
    with pytest.raises(ConfigError, match="at least 2"):
        encode_padded(tok, ["a"], max_tokens=1)
