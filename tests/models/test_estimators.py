"""Tabular estimators by configuration: seeding, checks, caching and CLI audits."""

import json
import sys
import textwrap

import numpy as np
import pytest
from scipy.special import logsumexp
from typer.testing import CliRunner

from mialens.analysis.explain import analyze
from mialens.analysis.settings import AnalysisSettings
from mialens.audit.design import prepare_audit
from mialens.audit.training_plan import load_models, models_logits
from mialens.cli import app
from mialens.errors import ConfigError
from mialens.models.architectures import ModelConfig
from mialens.models.estimators import fit_estimator, make_estimator, seeded
from mialens.workflows.audit import run_audit
from mialens.workflows.config import validate_config

HGB = "sklearn.ensemble:HistGradientBoostingClassifier"
SMALL_HGB = {"max_iter": 15, "max_depth": 3, "early_stopping": False}
PIPELINES = """
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

def scaled_forest(**params):
    return make_pipeline(StandardScaler(), RandomForestClassifier(**params))
"""


def _raw(model, attacks=("loss", "lira_offline"), **extra):
    return {
        "dataset": {"name": "digits"},
        "model": model,
        "audit": {"num_models": 4, "pool_size": 300, "bootstrap": 0, "attacks": list(attacks)},
        **extra,
    }


@pytest.fixture
def user_pipelines(tmp_path, monkeypatch):
    (tmp_path / "user_pipes.py").write_text(textwrap.dedent(PIPELINES))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("user_pipes", None)


def test_every_random_state_is_set_from_the_seed(user_pipelines):
    pipe = make_estimator(ModelConfig(estimator="user_pipes:scaled_forest"), seed=2**32 + 5)
    assert pipe.get_params()["randomforestclassifier__random_state"] == 5
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier()
    assert seeded(knn, 3) is knn  # no random state: unchanged


def test_fitting_is_deterministic_and_answers_probabilities():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(120, 5)), rng.integers(0, 3, 120)
    config = ModelConfig(estimator=HGB, params=SMALL_HGB)
    a = fit_estimator(config, x, y, seed=1).predict_proba(x)
    b = fit_estimator(config, x, y, seed=1).predict_proba(x)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"estimator": HGB, "params": {"trees": 3}}, "does not accept model.params"),
        ({"estimator": "sklearn.svm:LinearSVC"}, "without predict_proba"),
        ({"estimator": "sklearn.nope:Thing"}, "cannot import module 'sklearn.nope'"),
    ],
)
def test_bad_estimators_fail_before_training(model, message):
    with pytest.raises(ConfigError, match=message):
        models_logits(prepare_audit(validate_config(_raw(model))).plan, *_no_store())


def _no_store():
    from mialens.models.store import ModelStore

    return ModelStore("/nonexistent-never-written"), np.arange(3), []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"train": {"epochs": 3}}, "train.epochs configure PyTorch training"),
        ({"attacks": ["loss", "gradient_norm"]}, "attacks gradient_norm compute gradients"),
        ({"attacks": ["yoqo"]}, "attacks yoqo compute gradients"),
        ({"analysis": {"epoch_models": 2}}, "a model.estimator has no epochs"),
        ({"analysis": {"spaces": ["features"]}}, "which a model.estimator has not"),
    ],
)
def test_what_needs_pytorch_is_refused_at_validation(extra, message):
    attacks = extra.pop("attacks", ("loss",))
    with pytest.raises(ConfigError, match=message):
        validate_config(_raw({"estimator": HGB}, attacks, **extra))


def test_the_analysis_of_an_estimator_leaves_out_the_feature_space():
    config = validate_config(_raw({"estimator": HGB}, analysis={}))
    assert config.analysis.spaces == ["input", "logits"]
    again = validate_config(json.loads(json.dumps(config.model_dump(mode="json"))))
    assert again.model.estimator == HGB and again.analysis.spaces == ["input", "logits"]


def test_predictions_are_cached_and_the_models_refitted_alike():
    setup = prepare_audit(validate_config(_raw({"estimator": HGB, "params": SMALL_HGB})))
    args = (setup.plan, setup.store, setup.query_positions, setup.transforms)
    logits, records = models_logits(*args)
    assert not any(r["cached"] for r in records)
    np.testing.assert_allclose(logsumexp(logits, axis=-1), 0.0, atol=1e-5)  # log-probabilities
    again, records = models_logits(*args)
    assert all(r["cached"] for r in records)
    np.testing.assert_array_equal(again, logits)
    refitted = load_models(setup.plan, setup.store)
    x = setup.dataset.x[setup.query_positions]
    np.testing.assert_allclose(refitted[2].logits(x), logits[2, :, 0], atol=1e-6)


def test_the_analysis_runs_on_an_estimators_audit():
    analysis = {"feature_models": 4, "embedding_samples": 0, "iforest_trees": 5}
    raw = _raw({"estimator": HGB, "params": SMALL_HGB}, ["loss", "lira_online"], analysis=analysis)
    config = validate_config(raw)
    result = run_audit(config)
    summary = analyze(result, config.analysis).summary
    assert summary.attack == "lira_online"
    with pytest.raises(ConfigError, match=r"drop 'features' from analysis\.spaces"):
        analyze(result, AnalysisSettings(spaces=["features"], feature_models=4))


def _cli_audit(tmp_path, model: dict, attacks: list) -> dict:
    raw = _raw(model, attacks)
    config = tmp_path / "audit.yaml"
    config.write_text(json.dumps(raw))  # JSON is YAML
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["audit", str(config), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file() and (out / "samples.csv").is_file()
    return json.loads((out / "metrics.json").read_text())


def test_cli_audits_a_hist_gradient_boosting_classifier(tmp_path):
    boundary = {"name": "boundary", "max_queries": 30, "calibration": "none", "max_eval": 4}
    attacks = ["loss", "mentr", "attack_r", "lira_online", "rmia_offline", "gap", boundary]
    metrics = _cli_audit(tmp_path, {"estimator": HGB, "params": SMALL_HGB}, attacks)
    assert set(metrics["attacks"]) == {"loss", "mentr", "attack_r", "lira_online"} | {
        "rmia_offline",
        "gap",
        "boundary",
    }
    assert metrics["utility"]["test_accuracy"]["mean"] > 0.6
    assert metrics["attacks"]["lira_online"]["auc"]["mean"] > 0.55  # boosting overfits


def test_cli_audits_a_pipeline(tmp_path, user_pipelines):
    model = {"estimator": "user_pipes:scaled_forest", "params": {"n_estimators": 20}}
    metrics = _cli_audit(tmp_path, model, ["loss", "lira_offline"])
    assert metrics["utility"]["train_accuracy"]["mean"] == 1.0


@pytest.mark.parametrize(
    ("package", "path", "params"),
    [
        ("xgboost", "xgboost:XGBClassifier", {"n_estimators": 15, "max_depth": 3}),
        ("lightgbm", "lightgbm:LGBMClassifier", {"n_estimators": 15, "verbose": -1}),
    ],
)
def test_cli_audits_optional_boosting_libraries(tmp_path, package, path, params):
    pytest.importorskip(package)
    metrics = _cli_audit(tmp_path, {"estimator": path, "params": params}, ["loss", "lira_offline"])
    assert metrics["utility"]["test_accuracy"]["mean"] > 0.6
