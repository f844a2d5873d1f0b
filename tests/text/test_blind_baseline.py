"""The blind baseline gate: exact cross-validated AUC and interval on tiny arrays, quiet on
i.i.d. splits and firing on shifted ones (synthetic texts, and the King James Bible when
installed), and its guards."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from scipy import stats

from mialens.data import load_dataset
from mialens.data.sources import kjv
from mialens.errors import ConfigError, DataError
from mialens.metrics.blind_baseline import (
    DISTINGUISHABLE,
    blind_baseline,
    cv_auc,
    fold_groups,
    shape_features,
)
from mialens.metrics.delong import placements

WORDS = [
    "river",
    "stone",
    "light",
    "house",
    "field",
    "market",
    "window",
    "garden",
    "letter",
    "bridge",
    "winter",
    "morning",
    "silver",
    "engine",
    "harbour",
    "forest",
    "paper",
]
PENTATEUCH = ("Ge", "Exo", "Lev", "Num", "Deu")
GOSPELS = ("Mat", "Mark", "Luke", "John")


def _texts(gen: np.random.Generator, count: int, years: tuple[int, int] | None = None) -> list:
    """Sentences of 6-20 random words; with ``years``, each mentions one in that range."""
    texts = []
    for _ in range(count):
        words = gen.choice(WORDS, size=gen.integers(6, 21)).tolist()
        if years is not None:
            words.insert(int(gen.integers(len(words))), f"in {gen.integers(*years)}")
        texts.append(" ".join(words).capitalize() + ".")
    return texts


def test_placements_and_cv_auc_by_hand():
    auc, v10, v01 = placements(np.array([3.0, 1.0, 2.0]), np.array([2.0, 0.0]))
    assert auc == pytest.approx(4.5 / 6)  # 3>2, 3>0, 1<2, 1>0, 2=2 (1/2), 2>0
    np.testing.assert_allclose(v10, [1.0, 0.5, 0.75])
    np.testing.assert_allclose(v01, [0.5, 1.0])
    # fold 1: positives 3, 1 and negatives 2, 0; fold 2: positives 5, 7, negatives 4, 6
    scores = np.array([4.0, 3.0, 5.0, 0.0, 6.0, 1.0, 2.0, 7.0])
    labels = np.array([False, True, True, False, False, True, False, True])
    tests = [np.array([1, 3, 5, 6]), np.array([0, 2, 4, 7])]
    mean, (low, high), fold_aucs = cv_auc(scores, labels, tests, level=0.95)
    assert fold_aucs == pytest.approx((0.75, 0.75)) and mean == pytest.approx(0.75)
    # fold 1: v10 = (1, 1/2), v01 = (1/2, 1); fold 2: v10 = (1/2, 1), v01 = (1, 1/2):
    # each fold's DeLong error is sqrt(var(v10) / 2 + var(v01) / 2) with var = 1/8
    half = stats.norm.ppf(0.975) * np.sqrt(1 / 16 + 1 / 16)
    assert low == pytest.approx(0.75 - half) and high == 1.0  # truncated at 1


def test_shape_features_count_lengths_years_months_and_digits():
    rows = shape_features(["In May 1999 and 2021, 12345 men.", "no dates here"])
    text = "In May 1999 and 2021, 12345 men."
    np.testing.assert_allclose(
        rows[0],
        [np.log1p(len(text)), np.log1p(7), np.log1p(2), 1.0, 0.21, 1.0, 13 / len(text)],
    )
    np.testing.assert_allclose(rows[1], [np.log1p(13), np.log1p(3), 0.0, 0.0, 0.0, 0.0, 0.0])


def test_quiet_on_an_iid_split_with_unequal_sides():
    gen = np.random.default_rng(3)
    texts = _texts(gen, 240)
    result = blind_baseline(texts[:60], texts[60:], seed=11)
    assert not result.fires and result.interval[0] <= 0.5
    assert (result.n_members, result.n_nonmembers) == (60, 180)
    assert "distinguishable" not in result.message


def test_fires_on_a_date_shift_with_the_exact_sentence():
    gen = np.random.default_rng(4)
    members, nonmembers = _texts(gen, 120, (1950, 1990)), _texts(gen, 100, (2015, 2025))
    result = blind_baseline(members, nonmembers, seed=5)
    assert result.fires and result.auc > 0.9
    assert DISTINGUISHABLE in result.message
    record = result.to_json()
    assert record["fires"] is True and record["auc"] == result.auc
    assert json.loads(json.dumps(record)) == record
    assert record["ci_low"] == result.interval[0] > 0.5
    assert {"n_members", "n_nonmembers", "features", "level", "message"} <= set(record)
    assert blind_baseline(members, nonmembers, seed=5) == result  # same seed, same verdict


def test_identical_texts_share_a_fold_so_copies_cannot_fake_a_shift():
    gen = np.random.default_rng(6)
    members = _texts(gen, 12) * 5  # twelve texts, five copies each
    nonmembers = _texts(gen, 60)
    groups = fold_groups(members + nonmembers)
    assert len(set(groups[:60])) == 12 and len(set(groups[60:])) == 60
    result = blind_baseline(members, nonmembers, seed=2)
    assert not result.fires, result.message  # split copies would give AUC near 1


def test_caller_groups_join_identical_texts_transitively():
    groups = fold_groups(["a b", "c", "a  b", "d", "e"], groups=[0, 1, 2, 2, 3])
    assert groups[0] == groups[2] == groups[3]  # same text, then same caller group
    assert len({groups[0], groups[1], groups[4]}) == 3
    with pytest.raises(DataError, match="groups has 2 entries for 5 texts"):
        fold_groups(["a", "b", "c", "d", "e"], groups=[0, 1])


def test_bad_input_is_refused_before_fitting():
    gen = np.random.default_rng(7)
    texts = _texts(gen, 40)
    with pytest.raises(DataError, match=r"at least 10 texts per side.*9 members"):
        blind_baseline(texts[:9], texts[9:], seed=0)
    with pytest.raises(DataError, match=r"1 empty text\(s\) \(positions \[2\]\)"):
        blind_baseline([*texts[:2], "  ", *texts[3:20]], texts[20:], seed=0)
    with pytest.raises(DataError, match="not a single string"):
        blind_baseline("one text", texts, seed=0)
    with pytest.raises(DataError, match="position 1 holds a int"):
        blind_baseline([texts[0], 5, *texts[1:20]], texts[20:], seed=0)
    with pytest.raises(ConfigError, match="folds must be at least 2"):
        blind_baseline(texts[:20], texts[20:], seed=0, folds=1)
    with pytest.raises(DataError, match="a fold with fewer than two members"):
        blind_baseline([texts[0]] * 20, texts[20:], seed=0)  # one distinct member text


needs_corpus = pytest.mark.skipif(
    shutil.which("bible") is None or not kjv.DEBIAN_DATA.is_file(),
    reason="the King James Bible is not installed: apt-get install bible-kjv bible-kjv-text",
)


@pytest.fixture(scope="module")
def verses(tmp_path_factory):
    """Verse texts and books of the real corpus, loaded once for this module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MIALENS_DATA_DIR", str(tmp_path_factory.mktemp("kjv-data")))
        data = load_dataset("kjv")
    books = np.array([re.sub(r"\d+:\d+$", "", verse_id) for verse_id in data.ids])
    return np.array(data.texts, dtype=object), books


@needs_corpus
def test_kjv_quiet_on_random_verses_split_at_random(verses):
    texts, _ = verses
    pick = np.random.default_rng(0).choice(texts.size, 1000, replace=False)
    result = blind_baseline(list(texts[pick[:500]]), list(texts[pick[500:]]), seed=0)
    assert not result.fires, result.message
    assert abs(result.auc - 0.5) < 0.05


@needs_corpus
def test_kjv_fires_on_pentateuch_members_and_gospel_nonmembers(verses):
    texts, books = verses
    gen = np.random.default_rng(1)
    members = gen.choice(np.flatnonzero(np.isin(books, PENTATEUCH)), 500, replace=False)
    nonmembers = gen.choice(np.flatnonzero(np.isin(books, GOSPELS)), 500, replace=False)
    result = blind_baseline(list(texts[members]), list(texts[nonmembers]), seed=0)
    assert result.fires and result.interval[0] > 0.85, result.message
    assert result.message.startswith(DISTINGUISHABLE)
