"""A Hugging Face causal LM folder written by ``save_pretrained``, read without PyTorch:
what a configuration needs to know before any training (that the folder holds a
``config.json`` and safetensors weights, its vocabulary and context length, that
``transformers`` is installed) and a digest of its configuration and weights, which keys
the LMs fine-tuned from it (:mod:`mialens.audit.text_design`)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from mialens.errors import ConfigError

CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "n_ctx")
"""The ``config.json`` fields that give a model's longest sequence, first found wins."""
WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json")
INSTALL_HINT = "pip install 'mialens[transformers]'"


@dataclass(frozen=True)
class HFModelFolder:
    """What ``config.json`` says of a saved causal LM."""

    folder: Path
    vocab_size: int
    context: int


def check_weights(folder: Path) -> None:
    """Refuse a folder without ``config.json`` or without safetensors weights."""
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"{folder} holds no config.json: pass a folder written by save_pretrained"
        )
    if not any(folder.glob("*.safetensors")):
        raise ConfigError(
            f"{folder} holds no .safetensors weights (pickled .bin weights are never loaded); "
            "save the model with save_pretrained(folder, safe_serialization=True)"
        )


def read_hf_folder(folder: str | Path) -> HFModelFolder:
    """The vocabulary and context of the causal LM saved in ``folder``, after checking
    that it can be loaded (folder, ``config.json``, safetensors, ``transformers``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder")
    check_weights(folder)
    if importlib.util.find_spec("transformers") is None:
        raise ConfigError(f"Hugging Face models need the `transformers` package: {INSTALL_HINT}")
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{folder}/config.json is not readable JSON: {exc}") from exc
    config = config if isinstance(config, dict) else {}
    vocab = config.get("vocab_size")
    context = next((config[n] for n in CONTEXT_FIELDS if isinstance(config.get(n), int)), None)
    if not isinstance(vocab, int) or context is None:
        raise ConfigError(
            f"{folder}/config.json must give vocab_size and the context length (one of "
            f"{', '.join(CONTEXT_FIELDS)})"
        )
    return HFModelFolder(folder, vocab, context)


def hf_weights_digest(folder: str | Path) -> str:
    """SHA-256 over the names and bytes of ``config.json`` and the safetensors weights
    (and their index) of ``folder``: a changed base model changes it."""
    folder, h = Path(folder), hashlib.sha256()
    paths = {folder / "config.json"} | {p for pat in WEIGHT_PATTERNS for p in folder.glob(pat)}
    for path in sorted(paths):
        h.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
