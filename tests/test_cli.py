"""The command line: listings, the demo, audits with overrides and clean errors."""

import json
import tempfile

import pytest
import yaml
from typer.testing import CliRunner

from mialens.attacks import ATTACKS
from mialens.cli import app
from mialens.data.catalog import list_datasets

runner = CliRunner()
SMALL = [
    "--set", "audit.num_models=4",
    "--set", "audit.pool_size=300",
    "--set", "train.epochs=3",
    "--set", "audit.bootstrap=10",
]  # fmt: skip


def test_listings_have_one_line_per_entry():
    result = runner.invoke(app, ["attacks"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert len(lines) == len(ATTACKS)
    assert all(line.split()[0] in ATTACKS for line in lines)
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0
    assert len(result.output.strip().splitlines()) == len(list_datasets())


def test_demo_writes_the_three_outputs(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--quiet", *SMALL])
    assert result.exit_code == 0, result.output
    for name in ("metrics.json", "samples.csv", "report.html"):
        assert (tmp_path / name).is_file()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["audit"]["num_models"] == 4
    assert metrics["design"]["dataset"] == "digits"
    assert "lira_online" in result.output


def test_demo_shows_its_config():
    result = runner.invoke(app, ["demo", "--show-config"])
    assert result.exit_code == 0 and "digits" in result.output


def test_audit_with_overrides(tmp_path):
    config = tmp_path / "audit.yaml"
    config.write_text("dataset: {name: digits}\naudit: {attacks: [loss, lira_offline]}\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["audit", str(config), "--out", str(out), "-q", *SMALL])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["attacks"]) == {"loss", "lira_offline"}
    assert metrics["design"]["pool_size"] == 300


def test_bad_config_fails_cleanly(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("dataset: {name: digitz}\naudit: {num_modls: 4}\n")
    result = runner.invoke(app, ["audit", str(config), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "num_modls" in result.output and "num_models" in result.output
    assert "Traceback" not in result.output
    config.write_text("dataset: {name: digitz}\n")
    result = runner.invoke(app, ["audit", str(config), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "Did you mean 'digits'" in result.output
    result = runner.invoke(app, ["audit", str(tmp_path / "missing.yaml"), "--out", "x"])
    assert result.exit_code == 2 and "cannot read" in result.output
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "o"), "--set", "audit.num_models"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.output
    assert not (tmp_path / "o").exists()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and "mialens" in result.output


def test_defend_command(tmp_path):
    config = tmp_path / "defend.yaml"
    config.write_text(
        "dataset: {name: digits}\n"
        "train: {epochs: 3}\n"
        "audit: {num_models: 4, pool_size: 300, bootstrap: 0, attacks: [loss, lira_offline]}\n"
        "defenses: {evaluate: [{name: top1, output: {name: top_k, k: 1}}]}\n"
    )
    out = tmp_path / "out"
    result = runner.invoke(app, ["defend", str(config), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "defenses.json").read_text())
    assert set(report["defenses"]) == {"undefended", "top1"}
    assert "top1" in result.output and (out / "defenses.html").is_file()
    config.write_text("dataset: {name: digits}\n")
    result = runner.invoke(app, ["defend", str(config), "--out", str(out)])
    assert result.exit_code == 2 and "no `defenses:` section" in result.output


def test_demo_show_config_round_trips_into_an_audit(tmp_path):
    from mialens.cli import demo_config
    from mialens.workflows.config import load_config, validate_config

    result = runner.invoke(app, ["demo", "--show-config"], terminal_width=40)
    assert result.exit_code == 0
    shown = tmp_path / "demo.yaml"
    shown.write_text(result.stdout, encoding="utf-8")
    assert yaml.safe_load(result.stdout) == demo_config()
    assert load_config(shown) == validate_config(demo_config())


def _run_with_out(tmp_path, command: str, out) -> str:
    config = tmp_path / "audit.yaml"
    config.write_text(
        "dataset: {name: digits}\naudit: {num_models: 4}\n"
        "defenses: {evaluate: [{name: top1, output: {name: top_k, k: 1}}]}\n"
    )
    study = tmp_path / "study.yaml"
    study.write_text("name: s\nbase: {dataset: {name: digits}}\nsettings: [{name: original}]\n")
    args = {
        "audit": ["audit", str(config)],
        "demo": ["demo"],
        "defend": ["defend", str(config)],
        "study": ["study", str(study)],
    }[command]
    result = runner.invoke(app, [*args, "--out", str(out), "-q"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.mark.parametrize("command", ["audit", "demo", "defend", "study"])
def test_out_that_is_a_file_fails_before_training(tmp_path, command):
    out = tmp_path / "out.txt"
    out.write_text("not a folder")
    message = _run_with_out(tmp_path, command, out)
    assert f"--out {out} is a file, not a folder" in message
    message = _run_with_out(tmp_path, command, out / "run")
    assert f"--out {out / 'run'} cannot be created: {out} is a file" in message


def test_out_that_is_not_writable_fails_before_training(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    message = _run_with_out(tmp_path, "audit", tmp_path / "out")
    assert f"--out {tmp_path / 'out'} is not writable (Permission denied)" in message


def test_analyze_of_a_run_folder_that_is_not_writable(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    result = runner.invoke(app, ["analyze", str(tmp_path)])
    assert result.exit_code == 2
    assert f"RUN_DIR {tmp_path} is not writable (Permission denied)" in result.output


def test_cache_dir_that_is_a_file_fails_before_training(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.write_text("")
    monkeypatch.setenv("MIALENS_CACHE_DIR", str(cache))
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 2
    assert f"the cache folder ($MIALENS_CACHE_DIR) {cache} is a file, not a folder" in result.output
    result = runner.invoke(
        app, ["demo", "--out", str(tmp_path / "o"), "-q", "--set", f"audit.cache_dir={cache}/m"]
    )
    assert result.exit_code == 2
    assert f"audit.cache_dir {cache}/m cannot be created: {cache} is a file" in result.output


def test_study_table_shows_the_geometric_headline_and_marks_unreachable_levels(monkeypatch):
    import io

    from rich.console import Console

    import mialens.cli

    def row(name, reachable, supported):
        geo = {"measure": "input_knn", "auc": 0.61}
        return {"name": name, "train_acc": 1.0, "test_acc": 0.8, "auc": 0.7, "epsilon": None,
                "tpr_at_fpr": {"0.01": 0.0}, "tpr_resolved": {"0.01": True},
                "tpr_reachable": {"0.01": reachable}, "groups": {"geometric": geo},
                "intra_class_outliers_supported": supported}  # fmt: skip

    doc = {"name": "s", "attack": "lira_online", "figure_level": "0.01", "findings": ["done."],
           "settings": [row("a", True, True), row("b", False, False)]}  # fmt: skip
    buf = io.StringIO()
    monkeypatch.setattr(mialens.cli, "console", Console(file=buf, width=160))
    mialens.cli._print_study(doc, "out")
    lines = buf.getvalue().splitlines()
    a, b = (next(x for x in lines if f"│ {n} " in x) for n in "ab")
    assert "0.0000 " in a and "0.610 (input_knn)" in a and "│ supported" in a
    assert "0.0000†" in b and "not supported" in b
    assert "† tie group straddles this FPR; see report" in lines
