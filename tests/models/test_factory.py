"""Models from the user's own factory: import paths, checks and store keys."""

import json
import textwrap

import pytest
from typer.testing import CliRunner

from mialens.audit.design import prepare_audit
from mialens.cli import app
from mialens.errors import ConfigError
from mialens.models.architectures import ModelConfig, build_model
from mialens.models.factory import check_factory_model, code_identity, load_callable
from mialens.models.store import spec_key
from mialens.workflows.config import validate_config

FACTORY = """
import math
from torch import nn

def make_net(input_shape, num_classes, width=16):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(),
        nn.Linear(width, num_classes),
    )

def wrong_width(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes + 1))

def not_a_module(input_shape, num_classes):
    return [1, 2]

NOT_CALLABLE = 3
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module ``user_nets`` of the user's, importable for this test only."""
    (tmp_path / "user_nets.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "user_nets.py"
    import sys

    sys.modules.pop("user_nets", None)


def _raw(**model):
    return {
        "dataset": {"name": "digits"},
        "model": model,
        "train": {"epochs": 2, "batch_size": 64},
        "audit": {"num_models": 4, "pool_size": 200, "bootstrap": 0},
    }


def test_factory_builds_the_users_module_with_its_kwargs(user_module):
    config = ModelConfig(factory="user_nets:make_net", kwargs={"width": 7})
    model = build_model(config, (1, 8, 8), 10)
    assert model[1].out_features == 7 and model[3].out_features == 10
    check_factory_model(model, config.factory, (1, 8, 8), 10)


def test_a_built_in_configuration_dumps_as_before():
    assert ModelConfig().model_dump(mode="json") == {
        "arch": "mlp", "hidden": [256], "channels": [32, 64], "activation": "relu",
    }  # fmt: skip
    dumped = ModelConfig(factory="a.b:c", kwargs={"w": 1}).model_dump(mode="json")
    assert dumped == {"factory": "a.b:c", "kwargs": {"w": 1}}
    assert ModelConfig.model_validate(dumped).factory == "a.b:c"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"factory": "no_colon"}, "must be an import path 'package.module:function'"),
        ({"factory": "a:b", "estimator": "c:d"}, "choose one of model.factory and model.estimator"),
        ({"kwargs": {"w": 1}}, "model.kwargs are the arguments of model.factory"),
        ({"params": {"w": 1}}, "model.params are the parameters of model.estimator"),
        ({"factory": "a:b", "hidden": [3]}, "model.hidden configure the built-in architectures"),
    ],
)
def test_bad_model_sections_are_refused(model, message):
    with pytest.raises(ConfigError, match="invalid configuration") as err:
        validate_config(_raw(**model))
    assert message in str(err.value)


def test_dropout_belongs_in_the_factorys_kwargs():
    raw = _raw(factory="a:b")
    raw["train"]["dropout"] = 0.5
    with pytest.raises(ConfigError, match=r"pass the dropout rate in model\.kwargs"):
        validate_config(raw)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("user_nets_missing:make_net", "cannot import module 'user_nets_missing'"),
        ("user_nets:nothing_here", "module 'user_nets' has no 'nothing_here'"),
        ("user_nets:NOT_CALLABLE", "is a int, not a callable"),
        ("user_nets:not_a_module", "returned a list, not a torch.nn.Module"),
        ("user_nets:wrong_width", r"must return logits of shape \(batch, 10\)"),
    ],
)
def test_bad_factories_fail_before_training(user_module, path, message):
    config = validate_config(_raw(factory=path))
    with pytest.raises(ConfigError, match=message):
        prepare_audit(config)


def test_unexpected_kwargs_name_the_call(user_module):
    config = validate_config(_raw(factory="user_nets:make_net", kwargs={"depth": 3}))
    with pytest.raises(ConfigError, match=r"cannot be called as function\(input_shape=..."):
        prepare_audit(config)


def test_store_keys_follow_the_factory_its_kwargs_and_its_source(user_module):
    def key(**model):
        return spec_key(prepare_audit(validate_config(_raw(**model))).plan.spec(0))

    base = key(factory="user_nets:make_net")
    assert base == key(factory="user_nets:make_net")
    assert base != key(factory="user_nets:make_net", kwargs={"width": 8})
    assert base != key(arch="mlp")
    identity = code_identity("user_nets:make_net", "model.factory")
    user_module.write_text(user_module.read_text() + "\n# edited\n")
    assert code_identity("user_nets:make_net", "model.factory") != identity
    assert callable(load_callable("user_nets:make_net", "model.factory"))


def test_cli_audits_a_factory_model(user_module, tmp_path):
    config = tmp_path / "audit.yaml"
    config.write_text(
        "dataset: {name: digits}\n"
        "model: {factory: 'user_nets:make_net', kwargs: {width: 32}}\n"
        "train: {epochs: 5, batch_size: 32, lr: 0.01}\n"
        "audit: {num_models: 4, pool_size: 300, bootstrap: 0, attacks: [loss, lira_offline]}\n"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["audit", str(config), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model"]["factory"] == "user_nets:make_net"
    assert (out / "report.html").is_file() and (out / "samples.csv").is_file()
    assert metrics["utility"]["test_accuracy"]["mean"] > 0.5
