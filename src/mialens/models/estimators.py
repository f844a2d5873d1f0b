"""Tabular estimators by configuration: scikit-learn, XGBoost, LightGBM or any
classifier with the scikit-learn verbs (``fit``, ``predict_proba``).

``model.estimator`` names the class (``"sklearn.ensemble:HistGradientBoostingClassifier"``,
``"xgboost:XGBClassifier"``, ``"lightgbm:LGBMClassifier"``) or a function returning an
unfitted estimator, such as a :class:`sklearn.pipeline.Pipeline` of scaling and a model;
``model.params`` are its keyword arguments. Every model of the audit (target and
reference alike) is a fresh estimator with those parameters, trained on its half of the
pool, so the references follow the target's recipe by construction.

Seeding: every ``random_state`` parameter (of the estimator and of every step of a
pipeline) is set from the model's seed. Fitting runs on one native thread
(``threadpoolctl``), so that the same seed gives the same model on any machine.

Fitted estimators are not stored: the only general way to save one is pickle, which
mialens never loads. The model store keeps each model's predictions instead (its
probabilities as log-probabilities on the query set); attacks that query a model
themselves get it refitted, deterministically, from its seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mialens.errors import ConfigError
from mialens.models.factory import load_callable
from mialens.models.model_config import ModelConfig


def make_estimator(config: ModelConfig, seed: int) -> Any:
    """A fresh, unfitted estimator of ``config`` with its random states set from ``seed``."""
    path = config.estimator
    if path is None:
        raise ConfigError("make_estimator needs a model.estimator")
    make = load_callable(path, "model.estimator")
    try:
        estimator = make(**config.params)
    except TypeError as exc:
        raise ConfigError(
            f"model.estimator {path!r} does not accept model.params {sorted(config.params)}: {exc}"
        ) from exc
    missing = [
        verb for verb in ("fit", "predict_proba") if not callable(getattr(estimator, verb, None))
    ]
    if missing:
        raise ConfigError(
            f"model.estimator {path!r} gave a {type(estimator).__name__} without "
            f"{' and '.join(missing)}; mialens needs a classifier with fit and predict_proba "
            "(wrap others in sklearn.calibration.CalibratedClassifierCV)"
        )
    return seeded(estimator, seed)


def seeded(estimator: Any, seed: int) -> Any:
    """``estimator`` with every ``random_state`` parameter (also a pipeline step's,
    ``<step>__random_state``) set from ``seed``; unchanged without ``get_params``."""
    if not callable(getattr(estimator, "get_params", None)):
        return estimator
    names = [
        name
        for name in estimator.get_params(deep=True)
        if name == "random_state" or name.endswith("__random_state")
    ]
    if names:
        estimator.set_params(**{name: seed % 2**32 for name in names})
    return estimator


def fit_estimator(config: ModelConfig, x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    """A fresh estimator of ``config`` fitted on ``(x, y)`` (samples flattened) on one
    native thread."""
    estimator = make_estimator(config, seed)
    with threadpool_limits(limits=1):
        return estimator.fit(np.asarray(x).reshape(len(x), -1), y)
