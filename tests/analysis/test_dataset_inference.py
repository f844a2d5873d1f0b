"""Dataset inference (Maini et al. 2024): the Welch test by hand, the whole test on one
feature, its size under the null and its power on a shift, and the blind-baseline gate."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from scipy import stats

from mialens.analysis.dataset_inference import dataset_inference, one_sided_welch
from mialens.errors import ConfigError, DataError
from mialens.metrics.blind_baseline import DISTINGUISHABLE, BlindBaseline, blind_baseline


def _welch_by_hand(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return t, df, stats.t.sf(t, df)


def _blind(fires: bool, n_members: int, n_nonmembers: int) -> BlindBaseline:
    interval = (0.71, 0.83) if fires else (0.45, 0.55)
    auc = 0.77 if fires else 0.5
    return BlindBaseline(auc, interval, 0.95, fires, n_members, n_nonmembers, 5, 0, (auc,) * 5)


def _features(gen: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    """Five membership scores per text: normal, one heavy-tailed; ``shift`` moves two."""
    x = gen.normal(size=(n, 5))
    x[:, 4] = gen.standard_t(3, size=n)
    x[:, :2] += shift
    return x


def test_one_sided_welch_by_hand():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 1.0, 1.0])
    t, df, p = one_sided_welch(a, b)
    assert (t, df, p) == pytest.approx(_welch_by_hand(a, b))
    assert t == pytest.approx(1.833333 / np.sqrt(5 / 12 + 1 / 9), rel=1e-6)
    assert df == pytest.approx(4.34938, rel=1e-5) and 0 < p < 0.05
    assert one_sided_welch(b, a)[2] == pytest.approx(1 - p)


def test_one_feature_without_clipping_is_the_welch_test_of_the_feature():
    gen = np.random.default_rng(0)
    suspect, validation = gen.normal(1.0, 1.0, 41), gen.normal(0.0, 2.0, 30)
    result = dataset_inference(suspect, validation, seed=3, clip_fraction=0.0)
    sign = np.sign(result.weights["feature 0"])  # the scores are an affine map of the feature
    tested = _welch_by_hand(
        sign * suspect[result.suspect_tested], sign * validation[result.validation_tested]
    )
    assert (result.statistic, result.df, result.p_value) == pytest.approx(tested)
    assert (result.n_suspect_tested, result.n_validation_tested) == (21, 15)
    tested_rows = set(result.suspect_tested.tolist())
    assert len(tested_rows) == 21 and tested_rows != set(range(20, 41))  # a seeded shuffle
    assert result.rejects == (result.p_value <= 0.05)


def test_size_under_the_null_is_at_most_alpha():
    rejections = 0
    for rep in range(200):
        gen = np.random.default_rng(rep)
        result = dataset_inference(_features(gen, 200), _features(gen, 150), seed=rep)
        rejections += result.rejects
    assert rejections / 200 <= 0.08


def test_power_on_shifted_features():
    gen = np.random.default_rng(1)
    names = ["loss", "zlib", "mink", "minkpp", "ratio"]
    suspect, validation = _features(gen, 500, shift=0.3), _features(gen, 500)
    result = dataset_inference(suspect, validation, seed=0, feature_names=names)
    assert result.rejects and result.p_value < 1e-3
    assert min(result.weights["loss"], result.weights["zlib"]) > 0.1
    record = result.to_json()
    assert json.loads(json.dumps(record)) == record and record["blind_baseline"] is None


def test_refuses_when_the_blind_baseline_fires():
    gen = np.random.default_rng(2)
    suspect, validation = _features(gen, 40), _features(gen, 30)
    with pytest.raises(DataError, match=f"dataset inference refused: .*{DISTINGUISHABLE}"):
        dataset_inference(suspect, validation, seed=0, blind_baseline=_blind(True, 40, 30))
    with pytest.raises(DataError, match="fitted on 30 suspect and 40 validation texts"):
        dataset_inference(suspect, validation, seed=0, blind_baseline=_blind(False, 30, 40))
    quiet = dataset_inference(suspect, validation, seed=0, blind_baseline=_blind(False, 40, 30))
    assert not quiet.shift_allowed and quiet.to_json()["blind_baseline"]["fires"] is False


def test_allow_shift_warns_loudly_and_records(caplog):
    gen = np.random.default_rng(2)
    blind = _blind(True, 40, 30)
    with caplog.at_level(logging.WARNING, logger="mialens.analysis.dataset_inference"):
        result = dataset_inference(
            _features(gen, 40), _features(gen, 30), seed=0, blind_baseline=blind, allow_shift=True
        )
    assert "DATASET INFERENCE ON SHIFTED SETS" in caplog.text and DISTINGUISHABLE in caplog.text
    assert result.shift_allowed and result.to_json()["blind_baseline"]["fires"] is True


def test_a_real_gate_on_shifted_texts_refuses():
    gen = np.random.default_rng(5)
    old = [f"Report of {gen.integers(1950, 1990)} on the harbour." for _ in range(40)]
    new = [f"Report of {gen.integers(2015, 2025)} on the harbour." for _ in range(40)]
    blind = blind_baseline(old, new, seed=0)
    with pytest.raises(DataError, match="dataset inference refused"):
        dataset_inference(_features(gen, 40), _features(gen, 40), seed=0, blind_baseline=blind)


def test_bad_input_is_refused():
    gen = np.random.default_rng(3)
    x = _features(gen, 20)
    with pytest.raises(DataError, match="at least 4 texts"):
        dataset_inference(x[:3], x, seed=0)
    with pytest.raises(DataError, match="has 5 features, validation_features 4"):
        dataset_inference(x, x[:, :4], seed=0)
    with pytest.raises(DataError, match="2 feature_names for 5 features"):
        dataset_inference(x, x, seed=0, feature_names=["a", "b"])
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="suspect_features contains"):
        dataset_inference(bad, x, seed=0)
    with pytest.raises(ConfigError, match="alpha must lie strictly between 0 and 1"):
        dataset_inference(x, x, seed=0, alpha=1.0)
    with pytest.raises(DataError, match="constant on the tested halves"):
        dataset_inference(np.ones((10, 2)), np.ones((10, 2)), seed=0)
