"""Tests of the audit configuration (mialens.workflows.config)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
import torch

from mialens.attacks.registry import DEFAULT_ATTACKS
from mialens.errors import ConfigError
from mialens.workflows.config import AuditConfig, apply_overrides, load_config, validate_config
from mialens.workflows.study import load_study

REPO = Path(__file__).resolve().parents[1]
MINIMAL = {"dataset": {"name": "digits"}}


def _with(**sections) -> dict:
    return {**MINIMAL, **sections}


def _error(raw) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    return str(info.value)


# --- loading -------------------------------------------------------------------------------


def test_load_config_from_yaml_file(tmp_path):
    path = tmp_path / "audit.yaml"
    path.write_text(
        "dataset: {name: location30}\n"
        "model: {arch: mlp, hidden: [64, 32]}\n"
        "train:\n"
        "  epochs: 5\n"
        "  lr: 0.01\n"
        "  early_stopping: {patience: 2}\n"
        "audit:\n"
        "  num_models: 4\n"
        "  attacks: [loss, {name: lira_online, variance: global}]\n"
        "  cache_dir: /tmp/somewhere\n",
        encoding="utf-8",
    )
    config = load_config(path)
    assert isinstance(config, AuditConfig)
    assert config.dataset.name == "location30"
    assert config.model.hidden == [64, 32]
    assert config.train.epochs == 5
    assert config.train.lr == 0.01
    assert config.train.early_stopping.patience == 2
    assert config.train.dp is None
    assert config.audit.num_models == 4
    assert config.audit.attacks == ["loss", {"name": "lira_online", "variance": "global"}]
    assert config.audit.cache_dir == Path("/tmp/somewhere")
    # defaults
    assert config.train.optimizer == "adam"
    assert config.audit.seed == 0
    assert config.audit.fpr == [0.1, 0.01, 0.001, 0.0001]


def test_defaults_of_a_minimal_config():
    config = validate_config(dict(MINIMAL))
    assert config.model.arch == "mlp"
    assert config.audit.num_models == 16
    assert config.audit.attacks == list(DEFAULT_ATTACKS)
    assert config.audit.queries is None


def test_load_config_accepts_str_path_and_overrides(tmp_path):
    path = tmp_path / "audit.yaml"
    path.write_text("dataset: {name: digits}\naudit: {num_models: 8}\n", encoding="utf-8")
    config = load_config(str(path), ["audit.num_models=4", "train.epochs=3"])
    assert config.audit.num_models == 4
    assert config.train.epochs == 3


def test_load_config_without_file_uses_overrides_only():
    config = load_config(None, ["dataset.name=digits", "audit.seed=5"])
    assert config.dataset.name == "digits"
    assert config.audit.seed == 5
    with pytest.raises(ConfigError, match="dataset: Field required"):
        load_config(None)


def test_empty_yaml_file_means_empty_config(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="dataset: Field required"):
        load_config(path)
    assert load_config(path, ["dataset.name=digits"]).dataset.name == "digits"


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_yaml_that_is_not_a_mapping(tmp_path, text):
    path = tmp_path / "list.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n"])
def test_yaml_that_is_not_a_mapping_with_overrides(tmp_path, text):
    path = tmp_path / "list.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path, ["audit.seed=1"])


def test_validate_config_rejects_non_mapping():
    with pytest.raises(ConfigError, match="mapping; got list"):
        validate_config(["dataset"])


def test_invalid_yaml_syntax(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("dataset: {name: digits\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "nope.yaml")


def test_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path)


def test_binary_file_is_a_config_error(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\x80\x81\xfe\xff" * 8)  # not UTF-8
    with pytest.raises(ConfigError, match=str(path.name)):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        ("dataset: {name: digits}\naudit:\n  num_models: 4\n  seed: 1\n  num_models: 8\n",
         "num_models", (3, 5)),
        ("dataset: {name: digits}\ndataset: {name: location30}\n", "dataset", (1, 2)),
        ("dataset: {name: digits, name: location30}\n", "name", (1, 1)),
    ],
)  # fmt: skip
def test_duplicate_yaml_key_is_refused_with_key_and_lines(tmp_path, text, key, lines):
    path = tmp_path / "dup.yaml"
    path.write_text(text, encoding="utf-8")
    expected = f"key '{key}' is given twice in one mapping (line {lines[0]} and line {lines[1]})"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(path)


def test_yaml_merge_keys_may_still_be_overridden(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("common: &common {name: location30}\ndataset:\n  <<: *common\n  name: digits\n")
    with pytest.raises(ConfigError, match="common: unknown key"):  # merged, not refused
        load_config(path)


def test_duplicate_key_in_a_study_file_is_refused(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("name: s\nbase: {dataset: {name: digits}}\nsettings: []\nname: t\n")
    with pytest.raises(ConfigError, match=r"key .name. is given twice .*line 1 and line 4"):
        load_study(path)


def test_study_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"cannot read study .*study\.yaml: not UTF-8 text"):
        load_study(path)


@pytest.mark.parametrize("device", ["gpu0", "cuda0", "", "cpu:x"])
def test_unknown_device_is_a_config_error(device):
    message = _error(_with(audit={"device": device}))
    assert f"audit.device: {device!r} is not a torch device" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_cuda_says_to_use_the_cpu(device):
    message = _error(_with(audit={"device": device}))
    assert "which this machine does not have" in message
    assert "--set audit.device=cpu" in message


def test_cuda_index_beyond_the_devices_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert validate_config(_with(audit={"device": "cuda:1"})).audit.device == "cuda:1"
    assert "this machine has 2 CUDA device(s)" in _error(_with(audit={"device": "cuda:2"}))


@pytest.mark.parametrize(
    "path",
    [
        REPO / "examples" / "location30.yaml",
        resources.files("mialens.configs") / "demo.yaml",
    ],
    ids=["examples/location30", "packaged demo"],
)
def test_shipped_configs_validate(path):
    config = load_config(str(path))
    assert config.audit.num_models == 16
    assert len(config.audit.attacks) == 10


# --- unknown keys --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path", "hint", "valid"),
    [
        (
            {"datset": {"name": "x"}},
            "datset",
            "dataset",
            "analysis, audit, dataset, defenses, dp_audit, executor, model, train",
        ),
        (_with(dataset={"name": "d", "pth": "x"}), "dataset.pth", "path", "label_column"),
        (_with(model={"hiden": [3]}), "model.hiden", "hidden", "activation, arch, channels"),
        (_with(train={"epoch": 3}), "train.epoch", "epochs", "batch_size"),
        (
            _with(train={"early_stopping": {"patiense": 3}}),
            "train.early_stopping.patiense",
            "patience",
            "min_delta, monitor, patience, restore_best",
        ),
        (
            _with(train={"dp": {"noise_multiplyer": 1.0}}),
            "train.dp.noise_multiplyer",
            "noise_multiplier",
            "max_grad_norm",
        ),
        (_with(train={"augment": {"flips": True}}), "train.augment.flips", "flip", "flip, shift"),
        (_with(audit={"num_model": 4}), "audit.num_model", "num_models", "pool_size"),
        (_with(audit={"queries": {"shifts": 1}}), "audit.queries.shifts", "shift", "flip, shift"),
    ],
)
def test_unknown_key_names_path_hint_and_valid_keys(raw, path, hint, valid):
    message = _error(raw)
    assert f"{path}: unknown key (did you mean {hint!r}?)" in message
    assert "valid keys here: " in message
    assert valid in message


def test_unknown_key_without_close_match_lists_valid_keys():
    message = _error(_with(model={"zzzzzz": 1}))
    assert "model.zzzzzz: unknown key; valid keys here: activation, arch, channels, " in message
    assert ", hidden" in message
    assert "did you mean" not in message


def test_every_problem_is_reported():
    message = _error(_with(model={"hiden": [3]}, train={"epochs": 0}))
    assert "model.hiden" in message
    assert "train.epochs: Input should be greater than or equal to 1" in message


# --- attacks -------------------------------------------------------------------------------


def test_unknown_attack_name_with_suggestion():
    message = _error(_with(audit={"attacks": ["lira_onlin"]}))
    assert "audit.attacks" in message
    assert "unknown attack 'lira_onlin'" in message
    assert "Did you mean 'lira_online'?" in message


def test_attack_parameters_are_validated():
    message = _error(_with(audit={"attacks": [{"name": "rmia_offline", "a": 2}]}))
    assert "rmia_offline" in message
    assert "less than or equal to 1" in message
    message = _error(_with(audit={"attacks": [{"name": "lira_online", "variance": "perex"}]}))
    assert "lira_online" in message
    message = _error(_with(audit={"attacks": [{"name": "loss", "gamma": 2}]}))
    assert "gamma" in message


def test_valid_attack_parameters_are_accepted():
    attacks = [
        {"name": "lira_online", "variance": "per_example"},
        {"name": "rmia_offline", "a": 0.5, "gamma": 2.0},
        "loss",
    ]
    config = validate_config(_with(audit={"attacks": attacks}))
    assert config.audit.attacks == attacks


def test_attack_mapping_needs_a_name():
    assert "'name' key" in _error(_with(audit={"attacks": [{"nme": "loss"}]}))


def test_attacks_must_not_be_empty():
    assert "at least one attack" in _error(_with(audit={"attacks": []}))


@pytest.mark.parametrize(
    "attacks",
    [["loss", "lira_online", "loss"], ["loss", {"name": "loss"}]],
)
def test_duplicate_attacks_are_an_error(attacks):
    assert "attacks listed twice: ['loss']" in _error(_with(audit={"attacks": attacks}))


# --- number of models ----------------------------------------------------------------------


@pytest.mark.parametrize("k", [3, 5, 17])
def test_odd_num_models_is_an_error(k):
    message = _error(_with(audit={"num_models": k}))
    assert "audit.num_models" in message
    assert "complementary pairs" in message
    assert f"got {k}" in message


def test_num_models_below_two_is_an_error():
    assert "audit.num_models" in _error(_with(audit={"num_models": 0}))


@pytest.mark.parametrize("attack", ["lira_online", "rmia_online"])
def test_online_attack_needs_four_models(attack):
    message = _error(_with(audit={"num_models": 2, "attacks": ["loss", attack]}))
    assert f"attack {attack!r} needs num_models >= 4" in message
    assert validate_config(_with(audit={"num_models": 4, "attacks": [attack]}))


@pytest.mark.parametrize(
    "attack", ["lira_offline", "rmia_offline", "attack_r", "confidence", "entropy", "mentr"]
)
def test_offline_attack_needs_four_models(attack):
    # With two models, the only reference of a target is its complement, so the target's
    # non-members are members of every reference model and cannot be scored.
    message = _error(_with(audit={"num_models": 2, "attacks": [attack]}))
    assert f"attack {attack!r} needs num_models >= 4" in message


def test_two_models_suffice_for_attacks_without_references():
    config = validate_config(_with(audit={"num_models": 2, "attacks": ["loss", "attack_p"]}))
    assert config.audit.num_models == 2


# --- false-positive rates ------------------------------------------------------------------


@pytest.mark.parametrize("rates", [[0.1, 1.0], [0.0], [-0.1], [1.5], [], [float("nan")]])
def test_fpr_outside_unit_interval_is_an_error(rates):
    message = _error(_with(audit={"fpr": rates}))
    assert "audit.fpr" in message


def test_fpr_is_sorted_descending_and_deduplicated():
    config = validate_config(_with(audit={"fpr": [0.01, 0.1, 0.01, 0.001]}))
    assert config.audit.fpr == [0.1, 0.01, 0.001]


# --- overrides -----------------------------------------------------------------------------


def test_overrides_parse_yaml_values():
    raw = apply_overrides(
        {},
        [
            "audit.num_models=8",
            "train.lr=1e-3",
            "train.weight_decay=0.5",
            "dataset.download=false",
            "audit.attacks=[loss, lira_online]",
            "model.hidden=[64, 32]",
            "dataset.name=digits",
            "audit.pool_size=",
        ],
    )
    assert raw["audit"]["num_models"] == 8
    assert isinstance(raw["audit"]["num_models"], int)
    # PyYAML reads "1e-3" (no dot) as a string; pydantic turns it into a float
    assert raw["train"]["weight_decay"] == 0.5
    assert raw["dataset"]["download"] is False
    assert raw["audit"]["attacks"] == ["loss", "lira_online"]
    assert raw["model"]["hidden"] == [64, 32]
    assert raw["dataset"]["name"] == "digits"
    assert raw["audit"]["pool_size"] is None
    config = validate_config(raw)
    assert config.train.lr == pytest.approx(1e-3)
    assert config.dataset.download is False


def test_override_creates_nested_sections():
    raw = apply_overrides({"train": {"epochs": 3}}, ["train.early_stopping.patience=4"])
    assert raw == {"train": {"epochs": 3, "early_stopping": {"patience": 4}}}


def test_override_replaces_existing_values_and_sections():
    raw = {"audit": {"num_models": 16, "seed": 1}, "model": {"hidden": [256]}}
    apply_overrides(raw, ["audit.num_models=4", "model={arch: cnn}"])
    assert raw == {"audit": {"num_models": 4, "seed": 1}, "model": {"arch": "cnn"}}


def test_override_value_may_contain_equals_sign():
    raw = apply_overrides({}, ["dataset.path=/data/a=b.csv"])
    assert raw["dataset"]["path"] == "/data/a=b.csv"


def test_later_overrides_win():
    raw = apply_overrides({}, ["audit.seed=1", "audit.seed=2"])
    assert raw["audit"]["seed"] == 2


def test_override_through_a_scalar_is_an_error():
    with pytest.raises(ConfigError, match=r"audit\.seed is a value, not a section"):
        apply_overrides({"audit": {"seed": 0}}, ["audit.seed.x=1"])


@pytest.mark.parametrize("item", ["audit.num_models", "=3", "  =3", ""])
def test_malformed_override_is_an_error(item):
    with pytest.raises(ConfigError, match="must look like KEY=VALUE"):
        apply_overrides({}, [item])


def test_override_with_invalid_yaml_value():
    with pytest.raises(ConfigError, match="not valid YAML"):
        apply_overrides({}, ["audit.attacks=[loss"])


def test_override_error_reaches_validation_with_dotted_path():
    with pytest.raises(ConfigError, match=r"audit\.num_modls: unknown key"):
        load_config(None, ["dataset.name=digits", "audit.num_modls=4"])
