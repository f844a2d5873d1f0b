"""Content-addressed store of trained models and their cached outputs.

An entry is a folder named by a hash of everything that determines the weights (the
training data, architecture, recipe and seed). It holds ``model.safetensors``, a
``manifest.json`` (the spec, the training record, the weights' sha256 and its own) and
cached arrays such as logits on query sets, each ``<name>.npy`` with the sha256 of its
bytes in ``<name>.npy.sha256``. A model that cannot be saved without pickle (a
scikit-learn-style estimator) has an entry without weights: its manifest and cached
arrays only. Entries are written to a temporary folder and renamed into place, and
arrays are written atomically, so a killed run leaves either a complete file or none.

Everything is verified when read: an entry whose manifest or weights do not match their
checksums is moved aside (``<key>.corrupt``) and its model retrained; a cached array that
does not match its checksum is moved aside (``<name>.npy.corrupt``) and recomputed. Either
is logged as a warning naming the entry and the file. Files and folders get the modes
that the process's umask gives (a cache can be shared between users or nodes).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mialens.errors import CacheError
from mialens.io import dir_mode, file_mode, to_json, write_bytes, write_text

if TYPE_CHECKING:  # weights are read and written with PyTorch; cached arrays without it
    import torch

log = logging.getLogger(__name__)

STORE_FORMAT = 1
_WEIGHTS = "model.safetensors"
_MANIFEST = "manifest.json"
_MANIFEST_SHA = "manifest_sha256"
_CHECKSUM = ".sha256"


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


def _manifest_sha256(manifest: dict[str, Any]) -> str:
    """sha256 of a manifest's canonical JSON (without its own checksum field)."""
    body = {k: v for k, v in json.loads(to_json(manifest)).items() if k != _MANIFEST_SHA}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


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
        """Whether ``key`` is stored with an intact manifest (weights are checked by
        :meth:`load`); an entry whose manifest is damaged is moved aside."""
        if not (self.entry(key) / _MANIFEST).is_file():
            return False
        try:
            self.manifest(key)
        except CacheError as exc:
            log.warning("%s", exc)
            self.discard(key)
            return False
        return True

    def save(
        self, key: str, state_dict: dict[str, torch.Tensor] | None, manifest: dict[str, Any]
    ) -> None:
        """Store weights and manifest atomically (an existing complete entry is kept).
        Without weights (``state_dict=None``: a model that cannot be saved without
        pickle) the entry holds its manifest and cached arrays only."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.root))
        try:
            os.chmod(tmp, dir_mode())  # mkdtemp creates 0700
            digest = None
            if state_dict is not None:
                from safetensors.torch import save_file

                weights = tmp / _WEIGHTS
                save_file({k: v.contiguous() for k, v in state_dict.items()}, str(weights))
                os.chmod(weights, file_mode())  # safetensors creates 0600
                digest = _sha256(weights)
            full = {**manifest, "key": key, "weights_sha256": digest}
            full[_MANIFEST_SHA] = _manifest_sha256(full)
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
        """The manifest of ``key``; :class:`CacheError` if unreadable or not the one written
        (manifests written before checksums were recorded are accepted as they are)."""
        path = self.entry(key) / _MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CacheError(
                f"model cache entry {key}: unreadable manifest {path} ({exc})"
            ) from exc
        if not isinstance(manifest, dict):
            raise CacheError(
                f"model cache entry {key}: unreadable manifest {path} (a JSON "
                f"{type(manifest).__name__}, not an object)"
            )
        recorded = manifest.get(_MANIFEST_SHA)
        if recorded is not None and recorded != _manifest_sha256(manifest):
            raise CacheError(
                f"model cache entry {key}: manifest {path} does not match its checksum"
            )
        return manifest

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Weights and manifest of ``key``; :class:`CacheError` if the entry is corrupt."""
        manifest = self.manifest(key)
        weights = self.entry(key) / _WEIGHTS
        if not weights.is_file():
            raise CacheError(f"model cache entry {key}: {_WEIGHTS} is missing")
        if _sha256(weights) != manifest.get("weights_sha256"):
            raise CacheError(
                f"model cache entry {key}: {_WEIGHTS} does not match the sha256 in its manifest"
            )
        from safetensors.torch import load_file

        return load_file(str(weights)), manifest

    def discard(self, key: str) -> None:
        """Move a corrupt entry aside so that it is rebuilt; keeps it for inspection."""
        entry = self.entry(key)
        if entry.exists():
            aside = entry.with_name(f"{key}.corrupt")
            shutil.rmtree(aside, ignore_errors=True)
            try:
                os.replace(entry, aside)
            except FileNotFoundError:  # another process moved it first
                return
            log.warning(
                "model cache entry %s moved aside to %s; its model is retrained and its "
                "cached outputs recomputed",
                key,
                aside,
            )

    def load_array(self, key: str, name: str) -> np.ndarray | None:
        """A cached array of entry ``key``, or None if absent; one that does not match its
        checksum, or cannot be read, is moved aside (and so recomputed by the caller)."""
        path = self.entry(key) / f"{name}.npy"
        if not path.is_file():
            return None
        try:
            recorded = path.with_name(path.name + _CHECKSUM).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return self._set_aside(key, path, "has no checksum (written by an older mialens?)")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != recorded:
            return self._set_aside(key, path, "does not match its checksum")
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
            return self._set_aside(key, path, f"is unreadable ({exc})")

    def save_array(self, key: str, name: str, array: np.ndarray) -> None:
        """Cache ``array`` in entry ``key`` as ``name`` (never pickled), with its checksum."""
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        data = buf.getvalue()
        path = self.entry(key) / f"{name}.npy"
        # the checksum first: a killed write leaves a checksum without its array (so the
        # array is recomputed), never an array that cannot be verified
        write_text(path.with_name(path.name + _CHECKSUM), hashlib.sha256(data).hexdigest())
        write_bytes(path, data)

    def _set_aside(self, key: str, path: Path, problem: str) -> None:
        aside = path.with_name(path.name + ".corrupt")
        try:
            os.replace(path, aside)
        except FileNotFoundError:  # another process set it aside first
            return
        log.warning(
            "model cache entry %s: cached array %s %s; moved it aside to %s, it is recomputed",
            key,
            path.name,
            problem,
            aside.name,
        )
