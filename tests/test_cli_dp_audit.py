"""`mialens dp-audit` end to end on a tiny DP-SGD model: the JSON, the arrays, the page,
the resumed rerun and the refusals."""

import json

import numpy as np
import yaml
from typer.testing import CliRunner

from mialens.cli import app

runner = CliRunner()
TINY = {
    "dataset": {"name": "digits"},
    "model": {"hidden": [16]},
    "train": {"optimizer": "sgd", "momentum": 0.0, "lr": 0.5, "epochs": 1, "batch_size": 128,
              "dp": {"noise_multiplier": 1.0, "delta": 1e-5}},
    "dp_audit": {"kind": "dirac", "count": 20, "seed": 3, "methods": ["one_run", "one_run_fdp"],
                 "selection": {"rule": "split"}},
}  # fmt: skip


def _write(tmp_path, raw) -> str:
    path = tmp_path / "dp.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_dp_audit_writes_the_bounds_the_arrays_and_the_page(tmp_path):
    config, out = _write(tmp_path, TINY), tmp_path / "run"
    result = runner.invoke(app, ["dp-audit", config, "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "accountant ε" in result.output and "one_run_fdp" in result.output
    doc = json.loads((out / "dp_audit.json").read_text())
    assert {"accountant_epsilon", "delta", "dp_sgd", "canaries", "methods", "config"} <= set(doc)
    assert set(doc["dp_sgd"]) == {"sample_rate", "steps", "noise_multiplier", "max_grad_norm"}
    assert doc["canaries"]["m"] == 20 and doc["canaries"]["seed"] == 3
    for entry in doc["methods"].values():
        assert 0 <= entry["epsilon_lower"] <= entry["ceiling"]
        assert entry["ratio"] == entry["epsilon_lower"] / doc["accountant_epsilon"]
        assert entry["selection"]["rule"] == "split" and entry["m"] == 10
    assert doc["methods"]["one_run_fdp"]["curve"] == "dpsgd"
    ideal = doc["simulator_ideal"]
    assert ideal["one_run_fdp"]["method"] == "one_run_fdp_dpsgd" and "ratio" in ideal["one_run"]
    with np.load(out / "canaries.npz", allow_pickle=False) as arrays:
        bits = "".join("1" if b else "0" for b in arrays["included"])
        assert bits == doc["canaries"]["inclusion_bits"]
        assert arrays["score_dirac_final"].shape == (20,)
    page = (out / "dp_audit.html").read_text()
    assert "data:image/png;base64," in page and f"{doc['accountant_epsilon']:.3f}" in page
    assert "estimate" in page and "lower bound" in page
    # a rerun trains nothing (the model store) and gives the same numbers
    again = runner.invoke(app, ["dp-audit", config, "--out", str(out), "--quiet"])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "dp_audit.json").read_text())["methods"] == doc["methods"]


def test_dp_audit_refuses_impossible_settings_before_training(tmp_path):
    config = _write(tmp_path, TINY)
    out = str(tmp_path / "run")
    result = runner.invoke(app, ["dp-audit", config, "--out", out, "--set", "dp_audit.delta=0.01"])
    assert result.exit_code == 2 and "differs from train.dp.delta" in result.output
    result = runner.invoke(app, ["dp-audit", config, "--out", out, "--set", "train.dp=null"])
    assert result.exit_code == 2 and "train.dp is missing" in result.output
    result = runner.invoke(
        app, ["dp-audit", config, "--out", out, "--set", "dp_audit.kind=mislabeled",
              "--set", "dp_audit.count=5000"],
    )  # fmt: skip
    assert result.exit_code == 2 and "use fewer canaries" in result.output
    assert not (tmp_path / "run" / "dp_audit.json").exists()
