"""Content-addressed store of trained models and their cached outputs.

An entry is a folder named by a hash of everything that determines the weights (the
training data, architecture, recipe and seed). It holds ``model.safetensors``, a
``manifest.json`` (the spec, the training record and the weights' sha256) and cached
arrays such as logits on query sets. Entries are written to a temporary folder and
renamed into place, so a killed run leaves either a complete entry or none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mialens.errors import CacheError
from mialens.io import load_npy, save_npy, to_json

log = logging.getLogger(__name__)

STORE_FORMAT = 1
_WEIGHTS = "model.safetensors"
_MANIFEST = "manifest.json"


def default_cache_dir() -> Path:
    """``$MIALENS_CACHE_DIR``, else ``$XDG_CACHE_HOME/mialens`` or ``~/.cache/mialens``."""
    if os.environ.get("MIALENS_CACHE_DIR"):
        return Path(os.environ["MIALENS_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mialens"


def spec_key(spec: dict[str, Any]) -> str:
    """The store key of a model spec: sha256 of its canonical JSON (first 32 hex digits)."""
    canonical = json.dumps({"format": STORE_FORMAT, **spec}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ModelStore:
    """Models and per-model arrays under ``root/<key>/``."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir() / "models"

    def entry(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        return (self.entry(key) / _MANIFEST).is_file()

    def save(self, key: str, state_dict: dict[str, torch.Tensor], manifest: dict[str, Any]) -> None:
        """Store weights and manifest atomically (an existing complete entry is kept)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.root))
        try:
            weights = tmp / _WEIGHTS
            save_file({k: v.contiguous() for k, v in state_dict.items()}, str(weights))
            full = {**manifest, "key": key, "weights_sha256": _sha256(weights)}
            (tmp / _MANIFEST).write_text(to_json(full), encoding="utf-8")
            try:
                os.replace(tmp, self.entry(key))
            except OSError:  # a concurrent writer finished first, or a stale partial entry
                if self.has(key):
                    return
                shutil.rmtree(self.entry(key), ignore_errors=True)
                os.replace(tmp, self.entry(key))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def manifest(self, key: str) -> dict[str, Any]:
        path = self.entry(key) / _MANIFEST
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CacheError(
                f"model cache entry {self.entry(key)} has an unreadable manifest: {exc}"
            ) from exc

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Weights and manifest of ``key``; :class:`CacheError` if the entry is corrupt."""
        manifest = self.manifest(key)
        weights = self.entry(key) / _WEIGHTS
        if not weights.is_file() or _sha256(weights) != manifest.get("weights_sha256"):
            raise CacheError(
                f"model cache entry {self.entry(key)} is corrupt (weights missing or their "
                "sha256 differs from the manifest)"
            )
        return load_file(str(weights)), manifest

    def discard(self, key: str) -> None:
        """Move a corrupt entry aside so that it is rebuilt; keeps it for inspection."""
        entry = self.entry(key)
        if entry.exists():
            aside = entry.with_name(f"{key}.corrupt")
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(entry, aside)
            log.warning("moved corrupt cache entry to %s; it will be rebuilt", aside)

    def load_array(self, key: str, name: str) -> np.ndarray | None:
        """A cached array of entry ``key``, or None if absent or unreadable."""
        path = self.entry(key) / f"{name}.npy"
        if not path.is_file():
            return None
        try:
            return load_npy(path)
        except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
            log.warning("ignoring unreadable cached array %s (%s); recomputing", path, exc)
            path.unlink(missing_ok=True)
            return None

    def save_array(self, key: str, name: str, array: np.ndarray) -> None:
        save_npy(self.entry(key) / f"{name}.npy", array)
