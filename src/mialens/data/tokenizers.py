"""Tokenizers for language-model audits: bytes (built in), BPE trained locally, or a
Hugging Face tokenizer from a local folder.

Every tokenizer maps text to token ids and back, has a ``vocab_size``, a ``bos_id``
prepended to every sample (so that the first real token has a predicted probability
too), and a ``fingerprint`` that changes whenever the mapping does (it keys cached
log-probabilities). :func:`encode_padded` turns samples into one padded id matrix.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from mialens.errors import ConfigError, DataError
from mialens.io import write_text

log = logging.getLogger(__name__)

BPE_SPECIAL = "<s>"


class Tokenizer(Protocol):
    """What the models and the log-probability signal need of a tokenizer."""

    vocab_size: int
    bos_id: int
    fingerprint: str

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens 0..255, and 256 as the start token."""

    vocab_size = 257
    bos_id = 256
    fingerprint = "bytes-utf8-v1"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class BPETokenizer:
    """A byte-level BPE of the ``tokenizers`` library (its JSON form is the saved file)."""

    def __init__(self, backend: object) -> None:
        self.backend = backend
        bos = backend.token_to_id(BPE_SPECIAL)
        if bos is None:
            raise DataError(f"this BPE tokenizer has no {BPE_SPECIAL} start token")
        self.bos_id = int(bos)
        self.vocab_size = int(backend.get_vocab_size())
        self.fingerprint = hashlib.sha256(backend.to_str().encode()).hexdigest()

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int = 1024) -> BPETokenizer:
        """Learn a byte-level BPE of ``vocab_size`` tokens from ``texts`` (deterministic)."""
        tokenizers = _import_tokenizers()
        if vocab_size < 257:
            raise ConfigError(f"a byte-level BPE needs vocab_size >= 257, got {vocab_size}")
        backend = tokenizers.Tokenizer(tokenizers.models.BPE())
        backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = tokenizers.decoders.ByteLevel()
        trainer = tokenizers.trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[BPE_SPECIAL],
            initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        backend.train_from_iterator(list(texts), trainer=trainer)
        return cls(backend)

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """A tokenizer saved by :meth:`save` (or any ``tokenizers`` JSON with ``<s>``)."""
        tokenizers = _import_tokenizers()
        try:
            return cls(tokenizers.Tokenizer.from_file(str(path)))
        except Exception as exc:  # the Rust side raises plain Exceptions
            raise DataError(f"{path} is not a readable tokenizers JSON file: {exc}") from exc

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as its JSON (atomically)."""
        write_text(path, self.backend.to_str())

    def encode(self, text: str) -> list[int]:
        return list(self.backend.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids))


class HFTokenizer:
    """A ``transformers`` tokenizer saved with ``save_pretrained`` in a local folder."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.inner = _import_transformers().AutoTokenizer.from_pretrained(
            str(folder), local_files_only=True
        )
        bos = self.inner.bos_token_id
        bos = self.inner.eos_token_id if bos is None else bos
        if bos is None:
            raise ConfigError(
                f"the tokenizer in {folder} has neither a BOS nor an EOS token to start samples"
            )
        self.bos_id = int(bos)
        self.vocab_size = len(self.inner)
        self.fingerprint = _folder_fingerprint(folder)

    def encode(self, text: str) -> list[int]:
        return list(self.inner.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.inner.decode(list(ids))


def _import_tokenizers():
    try:
        import tokenizers
    except ImportError as exc:
        raise ConfigError(
            "BPE tokenizers need the `tokenizers` package: pip install 'mialens[text]'"
        ) from exc
    return tokenizers


def _import_transformers():
    try:
        import transformers
    except ImportError as exc:
        raise ConfigError(
            "Hugging Face tokenizers need the `transformers` package: pip install "
            "'mialens[transformers]'"
        ) from exc
    return transformers


def _folder_fingerprint(folder: Path) -> str:
    """sha256 over the names and bytes of a folder's files, weights excluded."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if path.suffix not in {".safetensors", ".bin", ".pt", ".h5", ".msgpack"}:
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def load_tokenizer(spec: str | Path) -> Tokenizer:
    """``"bytes"``, a BPE JSON file saved by :meth:`BPETokenizer.save`, or a folder holding
    a Hugging Face tokenizer."""
    if str(spec) == "bytes":
        return ByteTokenizer()
    path = Path(spec)
    if path.is_dir():
        return HFTokenizer(path)
    if path.is_file():
        return BPETokenizer.load(path)
    raise ConfigError(
        f"tokenizer {str(spec)!r} is neither 'bytes', a tokenizer JSON file nor a folder"
    )


def encode_padded(
    tokenizer: Tokenizer, texts: Sequence[str], max_tokens: int
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids ``(n, T)`` int64, each row the start token then the sample's tokens,
    zero-padded to the longest row ``T <= max_tokens``; and each row's length.

    Samples longer than ``max_tokens`` are truncated, with a warning that says how many.
    """
    if max_tokens < 2:
        raise ConfigError(f"max_tokens must be at least 2 (start token + one), got {max_tokens}")
    rows = [[tokenizer.bos_id, *tokenizer.encode(t)] for t in texts]
    truncated = sum(len(r) > max_tokens for r in rows)
    if truncated:
        log.warning(
            "%d of %d samples are longer than %d tokens and were truncated; cut long texts "
            "into windows (mialens.data.text.text_windows) to score all of them",
            truncated,
            len(rows),
            max_tokens,
        )
    rows = [r[:max_tokens] for r in rows]
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    tokens = np.zeros((len(rows), int(lengths.max(initial=1))), dtype=np.int64)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = row
    return tokens, lengths
