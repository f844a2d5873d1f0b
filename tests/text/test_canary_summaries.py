"""Secret-sharer canaries across targets: exposure per repetition count with paired
differences, and the canary-only TPR at low FPR, on hand-built arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mialens.audit.secret_canaries import (
    canary_membership,
    canary_tpr_at_fpr,
    exposure_by_repetition,
)
from mialens.data.secret_canaries import insert_canaries
from mialens.data.text import TextDataset
from mialens.errors import DataError

NATURAL = 10


def _inserted():
    ids = np.random.default_rng(1).permutation(200)[:NATURAL] * 5 + 2
    data = TextDataset("d", tuple(f"verse {i}" for i in range(NATURAL)), ids, np.arange(NATURAL))
    return insert_canaries(data, (1, 4), per_repetition=2, seed=0)  # canaries r1 x2, r4 x2


def test_exposure_per_repetition_and_paired_differences() -> None:
    _, record = _inserted()
    exposure = np.array([[1.0, 3.0, 5.0, 9.0], [2.0, 0.0, 8.0, 6.0], [4.0, 4.0, 1.0, 1.0]])
    trained = np.array([[1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 0, 0]], dtype=bool)
    per_count, (difference,) = exposure_by_repetition(exposure, trained, record)
    once, four = per_count
    assert (once.repetitions, once.canaries, four.repetitions) == (1, 2, 4)
    assert once.in_per_target == [2.0, 0.0, 4.0]
    assert four.in_per_target[:2] == [5.0, 7.0] and math.isnan(four.in_per_target[2])
    assert (once.in_mean, four.in_mean, once.out_mean, four.out_mean) == (2.0, 6.0, 3.0, 5.0)
    assert (difference.smaller, difference.larger, difference.n) == (1, 4, 2)
    assert difference.per_target == [3.0, 7.0] and difference.mean == 5.0
    half = stats.t.ppf(0.975, 1) * math.sqrt(8) / math.sqrt(2)  # std of (3, 7) is sqrt 8
    assert difference.ci_low == pytest.approx(5 - half) and difference.ci_high == pytest.approx(
        5 + half
    )
    with pytest.raises(DataError, match="needs 2 or more targets"):
        exposure_by_repetition(exposure[1:], trained[1:], record)
    with pytest.raises(DataError, match="no canaries inserted 1 or 16 times"):
        exposure_by_repetition(exposure, trained, record, pairs=[(1, 16)])
    with pytest.raises(DataError, match=r"\(targets, 4\) arrays"):
        exposure_by_repetition(exposure[:, :3], trained[:, :3], record)


def _scores_and_members(out, record):
    """Two targets (module docstring of the test below); columns in a shuffled order."""
    n = len(out)
    scores, members = np.full((2, n), 100.0), np.zeros((2, n), dtype=bool)
    members[0, :5] = members[1, 5:NATURAL] = True
    scores[0, 5:NATURAL] = [0.1, 0.2, 0.3, 0.4, 0.5]
    scores[1, :5] = [1.0, 2.0, 3.0, 4.0, 5.0]
    canary_scores = [[0.45, 0.3, 0.9, 0.6], [3.0, 4.5, 4.0, 10.0]]
    canary_in = [[True, False, True, False], [False, True, True, False]]
    for k, canary in enumerate(record.canaries):
        cols = list(canary.positions)
        scores[:, cols] = np.array(canary_scores)[:, k, None]
        members[:, cols] = np.array(canary_in)[:, k, None]
    order = np.random.default_rng(4).permutation(n)
    return scores[:, order], members[:, order], out.ids[order]


def test_canary_tpr_against_natural_non_members() -> None:
    # Target 0's natural non-members score 0.1..0.5: at FPR 0.2 one of five may pass, so
    # the threshold accepts > 0.4; target 1's score 1..5 and it accepts > 4 (4.0 ties out).
    out, record = _inserted()
    scores, members, ids = _scores_and_members(out, record)
    assert canary_membership(record, ids, members).tolist() == [
        [True, False, True, False],
        [False, True, True, False],
    ]
    once, four, once_low, _ = canary_tpr_at_fpr(scores, members, ids, record, levels=(0.2, 0.01))
    assert (once.level, once.repetitions, once.resolved) == (0.2, 1, True)
    assert (once.tpr, once.n_trained, once.tpr_per_target, once.per_canary) == (
        1.0,
        2,
        [1.0, 1.0],
        [1.0, 1.0],
    )
    assert once.out_canary_fpr == 0.0
    assert (four.tpr, four.tpr_per_target, four.per_canary[0]) == (0.5, [1.0, 0.0], 0.5)
    assert math.isnan(four.per_canary[1]) and four.out_canary_fpr == 1.0
    assert (four.tpr_mean, four.ci_low) == (0.5, 0.0)  # the t interval clipped to [0, 1]
    assert not once_low.resolved and once_low.tpr == 0.0  # FPR 0.01 of 5: accepts none


def test_copies_of_one_canary_must_share_membership() -> None:
    out, record = _inserted()
    scores, members, ids = _scores_and_members(out, record)
    copy = np.flatnonzero(ids == record.canaries[2].copy_ids[1])
    members[0, copy] = ~members[0, copy]
    with pytest.raises(DataError, match="canary-r4-00 are IN and OUT of one target"):
        canary_tpr_at_fpr(scores, members, ids, record)
    with pytest.raises(DataError, match="has no copy among the sample ids"):
        natural = ~np.char.startswith(ids.astype(str), "canary-")
        canary_membership(record, ids[natural], members[:, natural])
