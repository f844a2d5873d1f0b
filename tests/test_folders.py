"""Output and cache folders are checked before any work (mialens.folders)."""

import pytest

from mialens.audit import design
from mialens.errors import ConfigError
from mialens.folders import writable_folder
from mialens.workflows import audit as workflow
from mialens.workflows.config import validate_config

CONFIG = {"dataset": {"name": "digits"}, "audit": {"num_models": 2, "attacks": ["loss"]}}


def test_writable_folder_accepts_a_folder_to_be_created_and_creates_nothing(tmp_path):
    assert writable_folder(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    assert writable_folder(tmp_path, "--out") == tmp_path
    assert list(tmp_path.iterdir()) == []


def test_writable_folder_refuses_a_file_and_a_path_under_a_file(tmp_path):
    file = tmp_path / "f"
    file.write_text("")
    with pytest.raises(ConfigError, match=f"^--out {file} is a file, not a folder"):
        writable_folder(file, "--out")
    with pytest.raises(ConfigError, match=f"cannot be created: {file} is a file, not a folder$"):
        writable_folder(file / "x" / "y", "--out")


def test_run_audit_checks_its_output_folder_before_loading_anything(tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("prepare_audit ran")

    monkeypatch.setattr(workflow, "prepare_audit", never)
    file = tmp_path / "out"
    file.write_text("")
    with pytest.raises(ConfigError, match=r"the output folder .* is a file"):
        workflow.run_audit(validate_config(CONFIG), file)


def test_prepare_audit_checks_the_cache_folder_before_loading_data(tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the data set was loaded")

    monkeypatch.setattr(design, "load_dataset", never)
    cache = tmp_path / "cache"
    cache.write_text("")
    raw = {**CONFIG, "audit": {**CONFIG["audit"], "cache_dir": str(cache)}}
    with pytest.raises(ConfigError, match=f"audit.cache_dir {cache} is a file"):
        design.prepare_audit(validate_config(raw))
