"""A factory model that does not fit the data's features is refused before any training,
in the audit and in the DP audit, with a message naming input_shape and the factory."""

import sys
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from mialens.audit.dp_game import play_canary_game
from mialens.cli import app
from mialens.data.catalog import load_dataset
from mialens.data.registry import DatasetConfig
from mialens.errors import ConfigError
from mialens.models.architectures import ModelConfig
from mialens.models.recipe import TrainConfig

NETS = """
import math
from torch import nn

def extra_features(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape) + 3, num_classes))

def one_feature_short(input_shape, num_classes):
    return nn.Linear(input_shape[0] - 1, num_classes)

def unpadded_conv(input_shape, num_classes):  # the flattened size forgets the 3x3 border
    c, h, w = input_shape
    return nn.Sequential(
        nn.Conv2d(c, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * h * w, num_classes)
    )
"""


@pytest.fixture
def shape_nets(tmp_path, monkeypatch):
    (tmp_path / "shape_nets.py").write_text(textwrap.dedent(NETS))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("shape_nets", None)


@pytest.fixture
def table(tmp_path):
    """A tabular data set of 120 samples with 9 features, in shuffled id order."""
    rs = np.random.default_rng(5)
    path = tmp_path / "table.npz"
    ids = np.array([f"r{i}" for i in rs.permutation(120)])
    np.savez(path, x=rs.normal(size=(120, 9)), y=rs.integers(0, 3, 120), ids=ids)
    return {"name": "npz", "path": str(path)}


def _audit_refused(tmp_path, monkeypatch, dataset, factory):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(cache))
    config = tmp_path / "audit.yaml"
    config.write_text(
        f"dataset: {dataset}\nmodel: {{factory: 'shape_nets:{factory}'}}\n"
        "train: {epochs: 1, batch_size: 32}\n"
        "audit: {num_models: 4, pool_size: 60, bootstrap: 0, attacks: [loss]}\n"
    )
    result = CliRunner().invoke(app, ["audit", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert not list(cache.glob("models/*/*"))  # nothing trained
    return " ".join(result.output.split())


@pytest.mark.parametrize("factory", ["extra_features", "one_feature_short"])
def test_tabular_features_mismatch_is_refused_before_training(
    shape_nets, table, tmp_path, monkeypatch, factory
):
    message = _audit_refused(tmp_path, monkeypatch, table, factory)
    assert f"model.factory 'shape_nets:{factory}' does not fit the data" in message
    assert "input_shape=(9,)" in message and "mat1 and mat2 shapes" in message


def test_location30_features_mismatch_is_refused(
    shape_nets, location30_archive, tmp_path, monkeypatch
):
    monkeypatch.setenv("MIALENS_DATA_DIR", str(location30_archive.parent))
    message = _audit_refused(tmp_path, monkeypatch, {"name": "location30"}, "extra_features")
    assert "input_shape=(446,)" in message and "446 and 449" in message


def test_image_flattened_size_mismatch_is_refused(shape_nets, tmp_path, monkeypatch):
    message = _audit_refused(tmp_path, monkeypatch, {"name": "digits"}, "unpadded_conv")
    assert "model.factory 'shape_nets:unpadded_conv' does not fit the data" in message
    assert "input_shape=(1, 8, 8)" in message


def test_dp_audit_refuses_the_factory_before_training(shape_nets, table, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr("mialens.audit.dp_game.train_model", no_training)
    dataset = load_dataset(DatasetConfig.model_validate(table))
    recipe = TrainConfig(
        optimizer="sgd", lr=0.5, epochs=1, batch_size=16,
        dp={"noise_multiplier": 1.0, "max_grad_norm": 1.0},
    )  # fmt: skip
    model = ModelConfig(factory="shape_nets:extra_features")
    with pytest.raises(ConfigError, match=r"shape_nets:extra_features.*input_shape=\(9,\)"):
        play_canary_game(
            dataset, model, recipe, kind="mislabeled", count=10, seed=3, population_size=20
        )
