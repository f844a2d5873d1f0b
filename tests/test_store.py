"""Tests of the content-addressed model store (mialens.models.store)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mialens.errors import CacheError
from mialens.models.store import ModelStore, default_cache_dir, spec_key


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test may fall back on the user's cache directory."""
    cache = tmp_path / "default-cache"
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def _state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "body.1.weight": torch.randn(4, 3, generator=gen),
        "body.1.bias": torch.randn(4, generator=gen),
        "head.weight": torch.randn(2, 4, generator=gen).t(),  # non-contiguous on purpose
        "steps": torch.tensor([3, 1, 4], dtype=torch.int64),
    }


def _all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# --- keys --------------------------------------------------------------------------------


def test_spec_key_is_stable_and_ignores_key_order():
    a = {"data": "abc", "model": {"arch": "mlp", "hidden": [256]}, "seed": 3}
    b = {"seed": 3, "model": {"hidden": [256], "arch": "mlp"}, "data": "abc"}
    assert spec_key(a) == spec_key(b)
    assert spec_key(a) == spec_key(json.loads(json.dumps(a)))
    key = spec_key(a)
    assert len(key) == 32
    assert all(c in "0123456789abcdef" for c in key)


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 4},
        {"model": {"arch": "mlp", "hidden": [128]}},
        {"data": "abd"},
        {"extra": None},
    ],
)
def test_spec_key_differs_for_different_specs(change):
    base = {"data": "abc", "model": {"arch": "mlp", "hidden": [256]}, "seed": 3}
    assert spec_key(base) != spec_key({**base, **change})


def test_spec_key_handles_non_json_values():
    # Paths and other objects are hashed through str()
    assert spec_key({"path": Path("/a/b")}) == spec_key({"path": "/a/b"})


# --- save / load -------------------------------------------------------------------------


def test_save_load_round_trip(store: ModelStore):
    state = _state()
    key = spec_key({"seed": 0})
    assert not store.has(key)
    store.save(key, state, {"spec": {"seed": 0}, "history": [{"epoch": 1, "loss": 0.5}]})
    assert store.has(key)
    loaded, manifest = store.load(key)
    assert loaded.keys() == state.keys()
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.dtype
        assert torch.equal(loaded[name], tensor)
    assert manifest["spec"] == {"seed": 0}
    assert manifest["history"] == [{"epoch": 1, "loss": 0.5}]
    assert manifest["key"] == key
    assert len(manifest["weights_sha256"]) == 64
    assert store.manifest(key) == manifest


def test_save_leaves_no_temporary_folder(store: ModelStore):
    store.save("k1", _state(), {})
    assert sorted(p.name for p in store.root.iterdir()) == ["k1"]
    assert sorted(p.name for p in store.entry("k1").iterdir()) == [
        "manifest.json",
        "model.safetensors",
    ]


def test_manifest_accepts_numpy_values(store: ModelStore):
    store.save("k", _state(), {"epsilon": np.float64(1.5), "sizes": np.arange(3)})
    manifest = store.manifest("k")
    assert manifest["epsilon"] == 1.5
    assert manifest["sizes"] == [0, 1, 2]


def test_has_is_false_for_missing_or_partial_entries(store: ModelStore):
    assert not store.has("nothing")
    store.entry("partial").mkdir(parents=True)
    (store.entry("partial") / "model.safetensors").write_bytes(b"x")
    assert not store.has("partial")


def test_load_of_corrupted_weights_is_a_cache_error(store: ModelStore):
    store.save("k", _state(), {})
    weights = store.entry("k") / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # flip the bits of one byte of tensor data
    weights.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="does not match the sha256"):
        store.load("k")


def test_load_with_missing_weights_is_a_cache_error(store: ModelStore):
    store.save("k", _state(), {})
    (store.entry("k") / "model.safetensors").unlink()
    with pytest.raises(CacheError, match=r"model\.safetensors is missing"):
        store.load("k")


@pytest.mark.parametrize("content", ["{not json", ""])
def test_unreadable_manifest_is_a_cache_error(store: ModelStore, content: str):
    store.save("k", _state(), {})
    (store.entry("k") / "manifest.json").write_text(content)
    with pytest.raises(CacheError, match="unreadable manifest"):
        store.load("k")
    with pytest.raises(CacheError, match="unreadable manifest"):
        store.manifest("k")


def test_missing_manifest_is_a_cache_error(store: ModelStore):
    with pytest.raises(CacheError, match="unreadable manifest"):
        store.manifest("absent")


def test_discard_moves_entry_aside(store: ModelStore):
    store.save("k", _state(), {"n": 1})
    store.discard("k")
    assert not store.entry("k").exists()
    assert not store.has("k")
    aside = store.root / "k.corrupt"
    assert (aside / "manifest.json").is_file()
    assert (aside / "model.safetensors").is_file()
    # a second discard of a rebuilt entry replaces the older corpse
    store.save("k", _state(), {"n": 2})
    store.discard("k")
    assert json.loads((aside / "manifest.json").read_text())["n"] == 2
    # discarding a missing entry is a no-op
    store.discard("absent")
    assert not (store.root / "absent.corrupt").exists()


def test_save_over_existing_complete_entry_keeps_it(store: ModelStore):
    store.save("k", _state(), {"version": "first"})
    other = {name: torch.zeros_like(t) for name, t in _state().items()}
    store.save("k", other, {"version": "second"})
    loaded, manifest = store.load("k")
    assert manifest["version"] == "first"
    assert torch.equal(loaded["body.1.bias"], _state()["body.1.bias"])
    assert sorted(p.name for p in store.root.iterdir()) == ["k"]


def test_save_replaces_a_partial_entry(store: ModelStore):
    partial = store.entry("k")
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"half written")
    store.save("k", _state(), {"version": "rebuilt"})
    _, manifest = store.load("k")
    assert manifest["version"] == "rebuilt"
    assert sorted(p.name for p in store.root.iterdir()) == ["k"]


# --- cached arrays -----------------------------------------------------------------------


def test_save_array_load_array_round_trip(store: ModelStore):
    logits = np.random.default_rng(0).normal(size=(5, 2, 3)).astype(np.float32)
    store.save_array("k", "logits_audit", logits)
    out = store.load_array("k", "logits_audit")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, logits)


def test_load_array_of_missing_array_is_none(store: ModelStore):
    assert store.load_array("k", "nothing") is None


@pytest.mark.parametrize(
    "content",
    [
        b"garbage, not an npy file",
        b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'",  # truncated header
        b"",  # empty file
    ],
    ids=["garbage", "truncated", "empty"],
)
def test_corrupt_array_is_removed_and_reported_missing(store: ModelStore, content: bytes):
    store.save_array("k", "logits", np.ones((2, 2), np.float32))
    path = store.entry("k") / "logits.npy"
    path.write_bytes(content)
    assert store.load_array("k", "logits") is None
    assert not path.exists()


def test_truncated_array_data_is_removed(store: ModelStore):
    store.save_array("k", "logits", np.arange(100, dtype=np.float64))
    path = store.entry("k") / "logits.npy"
    path.write_bytes(path.read_bytes()[:-40])
    assert store.load_array("k", "logits") is None
    assert not path.exists()


def test_object_array_in_cache_is_refused(store: ModelStore):
    path = store.entry("k") / "obj.npy"
    path.parent.mkdir(parents=True)
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert store.load_array("k", "obj") is None
    assert not path.exists()


# --- default location ----------------------------------------------------------------------


def test_default_cache_dir_honours_mialens_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "mine"


def test_default_cache_dir_expands_user(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MIALENS_CACHE_DIR", "~/c")
    assert default_cache_dir() == tmp_path / "c"


def test_default_cache_dir_falls_back_to_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("MIALENS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "mialens"
    monkeypatch.setenv("MIALENS_CACHE_DIR", "")  # empty counts as unset
    assert default_cache_dir() == tmp_path / "xdg" / "mialens"


def test_default_cache_dir_falls_back_to_home_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("MIALENS_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "mialens"


def test_store_without_root_uses_default_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(tmp_path / "cache"))
    store = ModelStore()
    assert store.root == tmp_path / "cache" / "models"
    store.save("k", _state(), {})
    assert store.has("k")
    assert (tmp_path / "cache" / "models" / "k" / "manifest.json").is_file()


def test_nothing_is_written_outside_the_store_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _all_files(tmp_path)
    store = ModelStore(tmp_path / "root")
    store.save("k", _state(), {})
    store.save_array("k", "a", np.zeros(3))
    store.load("k")
    store.load_array("k", "a")
    store.discard("k")
    new = _all_files(tmp_path) - before
    assert new
    assert all(tmp_path / "root" in p.parents for p in new), new
    assert not (tmp_path / "default-cache").exists()
    assert os.listdir(tmp_path / "root") == ["k.corrupt"]


# --- file modes ----------------------------------------------------------------------------


@pytest.fixture(params=[0o022, 0o002, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_cache_files_and_folders_follow_the_umask(tmp_path: Path, umask: int):
    from mialens.io import save_npy, write_json

    store = ModelStore(tmp_path / "cache" / "models")
    store.save("k", _state(), {})
    store.save_array("k", "logits-abc", np.zeros(3))
    write_json(tmp_path / "cache" / "out" / "metrics.json", {"a": 1})
    save_npy(tmp_path / "cache" / "data" / "x.npy", np.zeros(2))
    folders = [p for p in (tmp_path / "cache").rglob("*") if p.is_dir()]
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert store.entry("k") in folders and len(files) == 6
    assert {p.name: _mode(p) for p in folders} == {p.name: 0o777 & ~umask for p in folders}
    assert {p.name: _mode(p) for p in files} == {p.name: 0o666 & ~umask for p in files}
