"""The blind baseline: can members and non-members be told apart without the model?

Das, Zhang & Tramèr (2024), "Blind Baselines Beat Membership Inference Attacks for
Foundation Models" (arXiv:2406.16201), show that on eight published membership
benchmarks a classifier that never queries the model separates members from
non-members better than the attacks, because the two sets were drawn from different
distributions (e.g. older versus newer Wikipedia). Their released code
(ethz-spylab/Blind-MIA) uses bags of words (``bag_of_words.py``: TF-IDF or count
vectors fed to naive Bayes, boosting or a stack, picked per benchmark by a search) and a
date rule (``date_detection.py``: the latest 4-digit number in the text against a
cut-off year).

Here one fixed, untuned classifier is the gate, so that its verdict involves no
selection: TF-IDF bags of word 1-2-grams and character 2-4-grams (as their ``tf``
vectoriser) plus length and date features (their date rule's latest year, made a
feature), into an L2-regularised logistic regression with balanced class weights.
Everything, vectorisers and scaler included, is fitted inside each training fold only.
Identical texts (and the caller's ``groups``) share a fold, so a copy in the training
folds cannot inflate the held-out AUC.

The AUC is the cross-validated AUC of LeDell, Petersen & van der Laan (2015, Electron.
J. Statist. 9:1583-1607): the mean of the folds' held-out AUCs. Within a fold the
held-out texts are scored by a classifier fitted without them, so when members and
non-members come from one distribution each fold's AUC has expectation exactly 0.5 and
DeLong's standard error ``se_v`` from that fold alone is valid. The folds' AUCs are
positively correlated, though (each fold's texts train the other folds' classifiers):
LeDell's influence-curve interval, which pools the folds' placement values as if they
were independent (the R package cvAUC's ``ci.cvAUC``; DeLong's interval on the pooled
out-of-fold scores assumes the same), fired on 17 of 200 i.i.d. splits of 300 verses of
the King James Bible at a nominal 2.5% (coverage 85% for 95%). Here the standard error
of the mean is bounded by the mean of the folds' errors, ``sd(mean_v AUC_v) <= mean_v
se_v`` (Cauchy-Schwarz, whatever the correlation): a Wald interval, truncated to [0, 1],
as wide as one held-out fold's, so conservative (by at most ``sqrt(folds)`` when the
folds are not negatively correlated) but covering.

The gate fires only when the interval lies above 0.5 (a one-sided test at
``(1 - level) / 2``). A held-out AUC below 0.5 is a classifier doing worse than chance on
new texts: it is no blind attack, and flipping it would need another held-out fit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse, stats
from scipy.sparse.csgraph import connected_components
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from mialens.errors import ConfigError, DataError
from mialens.metrics.delong import placements
from mialens.seeding import seed_sequence

DISTINGUISHABLE = "members and non-members are distinguishable without the model"
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (2, 4)
SHAPE_FEATURES = (
    "log characters",
    "log words",
    "years",
    "has a year",
    "latest year",
    "month names",
    "digit share",
)
FEATURES = (
    f"word {WORD_NGRAMS[0]}-{WORD_NGRAMS[1]}-grams (tf-idf)",
    f"character {CHAR_NGRAMS[0]}-{CHAR_NGRAMS[1]}-grams (tf-idf)",
    *SHAPE_FEATURES,
)
CLASSIFIER = "logistic regression (L2, C=1, balanced class weights)"
INTERVAL = (
    "cross-validated AUC (mean of the folds), Wald interval of the mean of the folds' DeLong errors"
)

_YEAR = re.compile(r"(?<!\d)(1\d{3}|20\d{2})(?!\d)")  # 1000-2099, not inside a longer number
_MONTH = re.compile(
    r"\b(January|February|March|April|May|June|July|August|September|October|November"
    r"|December)\b"
)


@dataclass(frozen=True)
class BlindBaseline:
    """The model-free classifier's verdict on a member / non-member pair of text sets."""

    auc: float
    interval: tuple[float, float]
    level: float
    fires: bool
    n_members: int
    n_nonmembers: int
    folds: int
    seed: int
    fold_aucs: tuple[float, ...]
    features: tuple[str, ...] = FEATURES

    @property
    def message(self) -> str:
        """One sentence for every page: the verdict, the AUC and its interval."""
        auc = (
            f"a blind classifier (no model) reaches AUC {self.auc:.3f} "
            f"({self.level:.0%} interval {self.interval[0]:.3f}-{self.interval[1]:.3f}) "
            f"on {self.n_members} members and {self.n_nonmembers} non-members"
        )
        if self.fires:
            return f"{DISTINGUISHABLE}: {auc}; attacks must beat this AUC to show leakage."
        return f"No distribution shift detected: {auc}."

    def to_json(self) -> dict[str, Any]:
        """The ``blind_baseline`` entry of metrics.json."""
        return {
            "auc": self.auc,
            "ci_low": self.interval[0],
            "ci_high": self.interval[1],
            "level": self.level,
            "fires": self.fires,
            "message": self.message,
            "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers,
            "folds": self.folds,
            "seed": self.seed,
            "fold_aucs": list(self.fold_aucs),
            "features": list(self.features),
            "classifier": CLASSIFIER,
            "interval": INTERVAL,
        }


def shape_features(texts: Sequence[str]) -> np.ndarray:
    """Length and date features of each text, in the order of :data:`SHAPE_FEATURES`:
    log1p of characters and of words, log1p of the number of years (1000-2099), whether
    there is one, the latest year (centred on 2000, in centuries; 0 without one), the
    number of English month names, and the share of characters that are digits."""
    rows = []
    for text in texts:
        years = [int(year) for year in _YEAR.findall(text)]
        rows.append(
            (
                np.log1p(len(text)),
                np.log1p(len(text.split())),
                np.log1p(len(years)),
                float(bool(years)),
                (max(years) - 2000) / 100 if years else 0.0,
                len(_MONTH.findall(text)),
                sum(c.isdigit() for c in text) / len(text),
            )
        )
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(SHAPE_FEATURES))


def blind_classifier() -> Pipeline:
    """The untuned text classifier of the gate (see the module docstring)."""
    words = TfidfVectorizer(
        ngram_range=WORD_NGRAMS, sublinear_tf=True, token_pattern=r"(?u)\b\w+\b"
    )
    chars = TfidfVectorizer(
        analyzer="char_wb", ngram_range=CHAR_NGRAMS, sublinear_tf=True, lowercase=False
    )
    shape = make_pipeline(FunctionTransformer(shape_features), StandardScaler())
    union = FeatureUnion([("words", words), ("chars", chars), ("shape", shape)])
    classifier = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000)
    return make_pipeline(union, classifier)


def _check_texts(texts: object, name: str) -> list[str]:
    if isinstance(texts, str | bytes):
        raise DataError(f"{name} must be a sequence of texts, not a single string.")
    texts = list(texts)  # type: ignore[call-overload]
    wrong = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if wrong is not None:
        kind = type(texts[wrong]).__name__
        raise DataError(f"{name} must hold strings; position {wrong} holds a {kind}.")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise DataError(
            f"{name} holds {len(empty)} empty text(s) (positions {empty[:5]}); drop them "
            "before the blind baseline."
        )
    return texts


def fold_groups(texts: Sequence[str], groups: Sequence[object] | None = None) -> np.ndarray:
    """Group ids under which identical texts (up to whitespace) and members of one of
    the caller's ``groups`` fall together: the connected components of both relations."""
    keys = [" ".join(text.split()) for text in texts]
    labels = list(groups) if groups is not None else list(range(len(texts)))
    if len(labels) != len(texts):
        raise DataError(f"groups has {len(labels)} entries for {len(texts)} texts.")
    nodes = {("text", key) for key in keys} | {("group", label) for label in labels}
    index = {node: i for i, node in enumerate(nodes)}
    rows = [index[("text", key)] for key in keys]
    cols = [index[("group", label)] for label in labels]
    graph = sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(index),) * 2)
    _, component = connected_components(graph, directed=False)
    return np.unique(component[rows], return_inverse=True)[1]


def cv_auc(
    scores: np.ndarray, labels: np.ndarray, tests: Sequence[np.ndarray], level: float
) -> tuple[float, tuple[float, float], tuple[float, ...]]:
    """The cross-validated AUC (the mean of the folds' AUCs, LeDell et al. 2015) and its
    Wald interval with the standard error ``mean_v se_v``, each fold's DeLong error
    ``sqrt(var(v10) / m_v + var(v01) / n_v)`` (ddof 1), truncated to [0, 1]."""
    aucs, errors = [], []
    for test in tests:
        held_scores, held_labels = scores[test], labels[test]
        auc, v10, v01 = placements(held_scores[held_labels], held_scores[~held_labels])
        aucs.append(auc)
        errors.append(np.sqrt(v10.var(ddof=1) / v10.size + v01.var(ddof=1) / v01.size))
    mean = float(np.mean(aucs))
    half = float(stats.norm.ppf((1 + level) / 2) * np.mean(errors))
    return mean, (max(0.0, mean - half), min(1.0, mean + half)), tuple(aucs)


def _folds(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list[tuple]:
    shuffle = int(seed_sequence(seed, "blind-baseline").generate_state(1)[0])
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=shuffle)
    splits = list(splitter.split(np.zeros(labels.size), labels, groups))
    if any(min(labels[test].sum(), (~labels[test]).sum()) < 2 for _, test in splits):
        raise DataError(
            f"{folds}-fold cross-validation leaves a fold with fewer than two members or "
            "non-members: too few distinct texts (identical texts and groups share a fold)."
        )
    return splits


def blind_baseline(
    member_texts: Sequence[str],
    nonmember_texts: Sequence[str],
    seed: int,
    folds: int = 5,
    level: float = 0.95,
    groups: Sequence[object] | None = None,
) -> BlindBaseline:
    """Fit the blind classifier on members versus non-members by stratified group K-fold
    cross-validation (``folds``, shuffled with ``seed``) and decide whether the two sets
    are distinguishable without the model (the interval at ``level`` lies above 0.5).

    ``groups`` (optional, one id per text, members first) keeps related texts, e.g.
    near duplicates, in one fold. Same seed, same verdict.
    """
    if folds < 2:
        raise ConfigError(f"folds must be at least 2; got {folds}.")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level must lie strictly between 0 and 1; got {level}.")
    members = _check_texts(member_texts, "member_texts")
    nonmembers = _check_texts(nonmember_texts, "nonmember_texts")
    if min(len(members), len(nonmembers)) < 2 * folds:
        raise DataError(
            f"the blind baseline needs at least {2 * folds} texts per side for {folds}-fold "
            f"cross-validation; got {len(members)} members and {len(nonmembers)} non-members."
        )
    texts = np.array(members + nonmembers, dtype=object)
    labels = np.arange(texts.size) < len(members)
    splits = _folds(labels, fold_groups(texts.tolist(), groups), folds, seed)
    scores = cross_val_predict(
        blind_classifier(), texts, labels, cv=splits, method="decision_function"
    )
    auc, interval, fold_aucs = cv_auc(scores, labels, [test for _, test in splits], level)
    return BlindBaseline(
        auc=auc,
        interval=interval,
        level=level,
        fires=bool(interval[0] > 0.5),
        n_members=len(members),
        n_nonmembers=len(nonmembers),
        folds=folds,
        seed=seed,
        fold_aucs=fold_aucs,
    )
