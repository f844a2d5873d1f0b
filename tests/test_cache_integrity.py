"""Every cached artefact is verified: a damaged one is set aside, reported and recomputed."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mialens.errors import CacheError
from mialens.models.store import ModelStore
from mialens.workflows.audit import run_audit
from mialens.workflows.config import validate_config


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def _state() -> dict[str, torch.Tensor]:
    return {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}


def _flip(path: Path, offset: int = -8, count: int = 8) -> None:
    data = bytearray(path.read_bytes())
    start = len(data) + offset if offset < 0 else offset
    for i in range(start, start + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _write_nan(path: Path) -> None:
    array = np.load(path)
    array.reshape(-1)[0] = np.nan
    np.save(path, array)  # a valid .npy file, but not the one that was cached


# --- store level -------------------------------------------------------------------------


@pytest.mark.parametrize("damage", [_flip, _write_nan], ids=["flipped-bytes", "nan"])
def test_damaged_cached_array_is_set_aside_and_reported(store, caplog, damage):
    store.save("k", _state(), {})
    logits = np.random.default_rng(3).normal(size=(7, 1, 3)).astype(np.float32)
    store.save_array("k", "logits-abc", logits)
    np.testing.assert_array_equal(store.load_array("k", "logits-abc"), logits)
    path = store.entry("k") / "logits-abc.npy"
    damage(path)
    with caplog.at_level(logging.WARNING):
        assert store.load_array("k", "logits-abc") is None
    assert "logits-abc.npy" in caplog.text and "model cache entry k" in caplog.text
    assert "does not match its checksum" in caplog.text and "recomputed" in caplog.text
    assert not path.exists()
    assert (store.entry("k") / "logits-abc.npy.corrupt").is_file()
    assert store.has("k")  # the weights are intact: only the array is rebuilt
    store.save_array("k", "logits-abc", logits)
    np.testing.assert_array_equal(store.load_array("k", "logits-abc"), logits)


def test_verified_nan_is_kept_as_the_models_output(store, caplog):
    # NaN that was cached as computed is a diverged model, reported as such by the audit
    logits = np.array([[np.nan, 1.0]], np.float32)
    store.save_array("k", "logits-abc", logits)
    np.testing.assert_array_equal(store.load_array("k", "logits-abc"), logits)
    assert "model cache entry" not in caplog.text


def test_cached_array_without_checksum_is_recomputed(store, caplog):
    store.save("k", _state(), {})
    np.save(store.entry("k") / "old.npy", np.zeros(3))  # an older mialens, or a killed write
    assert store.load_array("k", "old") is None
    assert "has no checksum" in caplog.text


@pytest.mark.parametrize(
    "content",
    ["{not json", "", "[1, 2]", '"a string"'],
    ids=["garbage", "empty", "list", "string"],
)
def test_broken_manifest_moves_the_entry_aside(store, caplog, content):
    store.save("k", _state(), {})
    store.save_array("k", "logits-abc", np.zeros(3, np.float32))
    (store.entry("k") / "manifest.json").write_text(content)
    with pytest.raises(CacheError, match="manifest"):
        store.manifest("k")
    assert not store.has("k")
    assert "model cache entry k" in caplog.text and "retrained" in caplog.text
    assert (store.root / "k.corrupt" / "manifest.json").is_file()
    assert store.load_array("k", "logits-abc") is None


def test_edited_manifest_is_detected(store):
    store.save("k", _state(), {"training": {"epsilon": 1.0}})
    path = store.entry("k") / "manifest.json"
    path.write_text(path.read_text().replace('"epsilon": 1.0', '"epsilon": 8.0'))
    with pytest.raises(CacheError, match="checksum"):
        store.manifest("k")
    assert not store.has("k")


def test_damaged_weights_name_the_file_and_key(store, caplog):
    store.save("k", _state(), {})
    _flip(store.entry("k") / "model.safetensors")
    with pytest.raises(CacheError, match=r"model cache entry k: model\.safetensors"):
        store.load("k")


# --- end to end --------------------------------------------------------------------------


def _config() -> dict:
    return validate_config(
        {
            "dataset": {"name": "digits"},
            "model": {"arch": "mlp", "hidden": [32]},
            "train": {"epochs": 3, "batch_size": 64},
            "audit": {
                "num_models": 4,
                "pool_size": 300,
                "bootstrap": 0,
                "attacks": ["loss", "lira_online"],
            },
            "analysis": {
                "epoch_models": 1,
                "feature_models": 2,
                "iforest_trees": 10,
                "embedding_samples": 100,
                "gallery": 4,
            },
        }
    )


def _numbers(out: Path) -> dict:
    """What a rerun must reproduce: metrics.json without time stamps, cache flags and
    timings, the per-sample scores and the analysis summary."""
    metrics = json.loads((out / "metrics.json").read_text())
    training = [
        {k: v for k, v in r.items() if k not in ("cached", "seconds")} for r in metrics["training"]
    ]
    return {
        "attacks": metrics["attacks"],
        "utility": metrics["utility"],
        "training": training,
        "samples": (out / "samples.csv").read_text(),
        "analysis": json.loads((out / "analysis" / "summary.json").read_text()),
    }


def _damage(kind: str, entry: Path) -> str:
    """Damage one artefact of a store entry; returns the name of the damaged file."""
    files = {
        "weights": entry / "model.safetensors",
        "logits": next(entry.glob("logits-*.npy")),
        "epochs": next(entry.glob("epochs-*.npy"), None),
        "manifest": entry / "manifest.json",
    }
    what, how = kind.split("-")
    path = files[what]
    if how == "flip":
        _flip(path, offset=-64)
    elif how == "nan":
        _write_nan(path)
    else:
        path.write_text({"garbage": "{garbage", "list": "[]"}[how])
    return path.name


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A clean run, its cache and its numbers; model 0 has per-epoch records cached."""
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("clean-cache")
    mp.setenv("MIALENS_CACHE_DIR", str(cache))
    out = tmp_path_factory.mktemp("clean-run")
    result = run_audit(_config(), out)
    mp.undo()
    return cache, [r["key"] for r in result.training], _numbers(out)


@pytest.mark.parametrize(
    "damage",
    [
        # only the analysis reads these: model 0's per-epoch records, and model 1's
        # weights (its penultimate-layer features); model 1 is retrained in its group
        ["epochs-flip", "weights-flip", None, None],
        # the audit recomputes these (its batched group of four models is retrained)
        ["manifest-list", "logits-flip", "logits-nan", "manifest-garbage"],
    ],
    ids=["analysis-artefacts", "audit-artefacts"],
)
def test_rerun_on_a_damaged_cache_gives_the_clean_numbers(
    clean, tmp_path, monkeypatch, caplog, damage
):
    clean_cache, keys, expected = clean
    cache = tmp_path / "cache"
    shutil.copytree(clean_cache, cache)
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(cache))
    damaged = {
        keys[k]: _damage(kind, cache / "models" / keys[k])
        for k, kind in enumerate(damage)
        if kind is not None
    }
    with caplog.at_level(logging.WARNING):
        run_audit(_config(), tmp_path / "run")
    for key, name in damaged.items():
        assert f"model cache entry {key}: " in caplog.text
        assert name in caplog.text
    assert _numbers(tmp_path / "run") == expected
    # the rebuilt cache is intact: a third run reads everything and warns about nothing
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        result = run_audit(_config(), tmp_path / "again")
    assert "model cache entry" not in caplog.text
    assert all(r["cached"] for r in result.training)
    assert _numbers(tmp_path / "again") == expected


# --- signal store ----------------------------------------------------------------------------


def _signal_store(root: Path):
    from mialens.signals.statistics import SignalSpec
    from mialens.signals.store import SignalStore

    member = np.zeros((2, 6), bool)
    member[0, [4, 1, 5]] = member[1, [0, 2, 3]] = True
    labels = np.array([2, 0, 1, 1, 0, 2])
    return SignalStore.create(root, [SignalSpec("loss", ())], member, labels, 1, labels[::-1])


@pytest.mark.parametrize("name", ["member.npy", "labels.npy", "population_labels.npy"])
def test_damaged_signal_store_design_is_an_error(tmp_path, name):
    from mialens.errors import DataError
    from mialens.signals.store import SignalStore

    store = _signal_store(tmp_path / "signals")
    np.testing.assert_array_equal(SignalStore(store.root).member, store.member)
    path = store.root / name
    array = np.load(path)
    array.flat[0] = ~array.flat[0] if array.dtype == bool else array.flat[0] + 1
    np.save(path, array)  # a valid file, but not the design the signals were written for
    with pytest.raises(DataError, match=f"{name} does not match the checksum"):
        SignalStore(store.root)
