"""Dataset inference: was this collection of texts, as a whole, in the training data?

Maini, Jia, Papernot & Dziedzic (2024), "LLM Dataset Inference: Did you train on my
dataset?" (arXiv:2406.06443), Figure 1: the victim holds a suspect set and a validation
set known to be out and drawn from the same distribution; both are split into disjoint
parts A and B. Stage 1: per-text membership scores (LOSS, zlib ratio, Min-K%, Min-K%++,
perplexity ratios, ...) are the features. Stage 2: a linear model learns, on the A
parts, to tell suspect from validation features. Stage 3: it scores the B parts and a
one-sided t-test asks whether the suspect texts look more like members than the
validation texts.

Following the released code (pratyushmaini/llm_dataset_inference, ``linear_di.py``):
outliers are clipped to the 2.5% and 97.5% quantiles of each feature, features are
standardised, the linear model is a logistic one (``nn.Linear`` under
``BCEWithLogitsLoss``) and its logits are the scores; the halves are equal. Where this
module differs, so that the test stays valid: the clipping quantiles and the scaler are
fitted on the A parts only (the released code uses every text, per set), the suspect set
is labelled 1 and the test asks whether its scores exceed the validation scores (the
released code labels it 0 and tests "less": the same test), the fit is scikit-learn's
L2-regularised logistic regression (``C=1``, which stays finite on separable features;
the released code runs 1000 Adam steps without penalty), and the t-test is Welch's (the
released code's default ``ttest_ind`` pools the variances; with equal halves the
statistic is the same and only the degrees of freedom differ).

Under the null (the suspect set is no more "member" than the validation set) the B parts
are scored by a map fitted without them, so the p-value is the usual Welch one. A
distribution shift between the two sets also makes the test reject, whatever the
training data: with a :class:`~mialens.metrics.blind_baseline.BlindBaseline` of the same
pair that fires, the test is refused unless ``allow_shift=True``, which warns and records.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from mialens.errors import ConfigError, DataError
from mialens.metrics.blind_baseline import BlindBaseline
from mialens.seeding import rng
from mialens.validation import check_finite

log = logging.getLogger(__name__)

CLIP_FRACTION = 0.05  # the released code's remove_frac: 2.5% clipped on each side
MIN_TEXTS = 4  # per set: two per half, the fewest a Welch t-test takes


@dataclass(frozen=True)
class DatasetInference:
    """The test's outcome; ``rejects`` says "the suspect set was trained on" at ``alpha``.
    ``weights`` are the linear map's coefficients on the standardised features (positive:
    higher values look like the suspect set); ``*_tested`` are the rows of the halves the
    test ran on."""

    statistic: float
    df: float
    p_value: float
    alpha: float
    rejects: bool
    n_suspect: int
    n_validation: int
    n_suspect_tested: int
    n_validation_tested: int
    weights: dict[str, float]
    suspect_tested: np.ndarray
    validation_tested: np.ndarray
    seed: int
    shift_allowed: bool = False
    blind_baseline: BlindBaseline | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready record (the tested rows are left out; they follow from the seed)."""
        return {
            "statistic": self.statistic,
            "df": self.df,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "rejects": self.rejects,
            "n_suspect": self.n_suspect,
            "n_validation": self.n_validation,
            "n_suspect_tested": self.n_suspect_tested,
            "n_validation_tested": self.n_validation_tested,
            "weights": self.weights,
            "seed": self.seed,
            "test": "one-sided Welch t-test, suspect scores > validation scores",
            "shift_allowed": self.shift_allowed,
            "blind_baseline": None
            if self.blind_baseline is None
            else self.blind_baseline.to_json(),
        }


def one_sided_welch(suspect: np.ndarray, validation: np.ndarray) -> tuple[float, float, float]:
    """Welch's t statistic, its Welch-Satterthwaite degrees of freedom and the p-value of
    "the suspect mean exceeds the validation mean"."""
    result = stats.ttest_ind(suspect, validation, equal_var=False, alternative="greater")
    return float(result.statistic), float(result.df), float(result.pvalue)


def _check_features(x: object, name: str) -> np.ndarray:
    x = check_finite(np.asarray(x, dtype=np.float64), name)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] == 0:
        raise DataError(f"{name} must be a (texts, features) matrix; got shape {x.shape}.")
    if x.shape[0] < MIN_TEXTS:
        raise DataError(f"{name} needs at least {MIN_TEXTS} texts (rows); got {x.shape[0]}.")
    return x


def _check_pair(
    suspect_features: object, validation_features: object, feature_names: object
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    suspect = _check_features(suspect_features, "suspect_features")
    validation = _check_features(validation_features, "validation_features")
    if suspect.shape[1] != validation.shape[1]:
        raise DataError(
            f"suspect_features has {suspect.shape[1]} features, validation_features "
            f"{validation.shape[1]}: pass the same scores for both."
        )
    count = suspect.shape[1]
    names = [f"feature {i}" for i in range(count)] if feature_names is None else feature_names
    names = [str(name) for name in names]  # type: ignore[attr-defined]
    if len(names) != count:
        raise DataError(f"{len(names)} feature_names for {count} features.")
    return suspect, validation, names


def check_shift(
    blind: BlindBaseline | None, n_suspect: int, n_validation: int, allow_shift: bool
) -> bool:
    """Refuse (or, with ``allow_shift``, warn) when the blind baseline of the pair fires;
    returns whether it fired (so the result is flagged)."""
    if blind is None:
        return False
    if (blind.n_members, blind.n_nonmembers) != (n_suspect, n_validation):
        raise DataError(
            f"the blind baseline was fitted on {blind.n_members} suspect and "
            f"{blind.n_nonmembers} validation texts, not on these {n_suspect} and "
            f"{n_validation}: fit it on the same pair."
        )
    if not blind.fires:
        return False
    shift = (
        "the suspect and validation sets differ in distribution (suspect texts as members, "
        f"validation texts as non-members: {blind.message}), so a "
        "positive dataset inference test would not show that the suspect set was trained on"
    )
    if not allow_shift:
        raise DataError(
            f"dataset inference refused: {shift}. Use a validation set drawn like the suspect "
            "set, or pass allow_shift=True (mialens dataset-inference --allow-shift) to run it "
            "anyway (the result is flagged)."
        )
    log.warning("DATASET INFERENCE ON SHIFTED SETS: %s; the result is flagged.", shift)
    return True


def _halves(n: int, seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    order = rng(seed, "dataset-inference", name).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


def _fit_scores(
    fit_suspect: np.ndarray, fit_validation: np.ndarray, clip_fraction: float
) -> tuple[Any, np.ndarray]:
    """Learn the linear map on the A parts; return the scoring function and its weights."""
    fit = np.concatenate([fit_suspect, fit_validation])
    low, high = np.quantile(fit, [clip_fraction / 2, 1 - clip_fraction / 2], axis=0)
    if clip_fraction == 0:
        low, high = np.full_like(low, -np.inf), np.full_like(high, np.inf)
    scaler = StandardScaler().fit(np.clip(fit, low, high))
    labels = np.arange(fit.shape[0]) < fit_suspect.shape[0]
    model = LogisticRegression(C=1.0, max_iter=5000)
    model.fit(scaler.transform(np.clip(fit, low, high)), labels)

    def score(x: np.ndarray) -> np.ndarray:
        return model.decision_function(scaler.transform(np.clip(x, low, high)))

    return score, model.coef_[0]


def dataset_inference(
    suspect_features: object,
    validation_features: object,
    seed: int,
    alpha: float = 0.05,
    *,
    feature_names: Sequence[str] | None = None,
    blind_baseline: BlindBaseline | None = None,
    allow_shift: bool = False,
    clip_fraction: float = CLIP_FRACTION,
) -> DatasetInference:
    """Test whether the suspect texts were trained on, against validation texts known
    to be out (Maini et al. 2024; see the module docstring).

    ``suspect_features`` and ``validation_features`` hold one row per text and one
    column per membership score (higher or lower may mean member: the linear map learns
    the sign). Each set is split into halves with ``seed``; the map is fitted on the
    first halves and the one-sided Welch test runs on the second. ``blind_baseline``
    (members = suspect texts, non-members = validation texts) refuses a shifted pair
    unless ``allow_shift``. ``clip_fraction`` of each feature's values is clipped, half
    on each side (0 clips nothing).
    """
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie strictly between 0 and 1; got {alpha}.")
    if not 0.0 <= clip_fraction < 1.0:
        raise ConfigError(f"clip_fraction must lie in [0, 1); got {clip_fraction}.")
    suspect, validation, names = _check_pair(suspect_features, validation_features, feature_names)
    shifted = check_shift(blind_baseline, len(suspect), len(validation), allow_shift)
    fit_s, test_s = _halves(len(suspect), seed, "suspect")
    fit_v, test_v = _halves(len(validation), seed, "validation")
    score, weights = _fit_scores(suspect[fit_s], validation[fit_v], clip_fraction)
    statistic, df, p_value = one_sided_welch(score(suspect[test_s]), score(validation[test_v]))
    if not np.isfinite(statistic):
        raise DataError(
            "the learned scores are constant on the tested halves: no test is possible."
        )
    return DatasetInference(
        statistic=statistic,
        df=df,
        p_value=p_value,
        alpha=alpha,
        rejects=p_value <= alpha,
        n_suspect=len(suspect),
        n_validation=len(validation),
        n_suspect_tested=test_s.size,
        n_validation_tested=test_v.size,
        weights=dict(zip(names, weights.tolist(), strict=True)),
        suspect_tested=test_s,
        validation_tested=test_v,
        seed=seed,
        shift_allowed=shifted,
        blind_baseline=blind_baseline,
    )
