"""Secret-sharer canaries: the format and its candidate space, insertion, the record."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from pydantic import ValidationError

from mialens.data.secret_canaries import (
    CanaryRecord,
    SecretFormat,
    insert_canaries,
    make_canaries,
)
from mialens.data.text import TextDataset
from mialens.errors import ConfigError, DataError

PHRASES = ["for his mercy endureth for ever", "in the beginning", "let there be light"]


def _data(n: int = 12) -> TextDataset:
    ids = np.random.default_rng(3).permutation(10 * n)[:n] * 7 + 5  # shuffled, non-contiguous
    texts = tuple(f"{PHRASES[i % 3]} {i}" for i in range(n))
    return TextDataset("verses", texts, ids, np.arange(n) // 2)  # pairs share a group


def test_default_format_has_a_million_six_digit_secrets() -> None:
    fmt = SecretFormat()
    assert fmt.space_size == 10**6
    assert fmt.secrets([0, 42, 999_999]) == ["000000", "000042", "999999"]
    assert fmt.index_of("000042") == 42 and fmt.text("123456") == "my secret number is 123456"
    other = SecretFormat(template="pin {secret}!", alphabet="ab", length=20)
    assert other.space_size == 2**20 and other.secrets([5])[0] == "a" * 17 + "bab"
    assert other.index_of(other.secrets([123_457])[0]) == 123_457


def test_small_spaces_are_refused_unless_exact_only() -> None:
    with pytest.raises(
        ValidationError, match="10000 candidate secrets are fewer than the 1,000,000"
    ):
        SecretFormat(length=4)
    assert SecretFormat(length=4, exact_only=True).space_size == 10**4
    with pytest.raises(ValidationError, match="exactly once"):
        SecretFormat(template="no slot here")
    with pytest.raises(ValidationError, match="exactly once"):
        SecretFormat(template="{secret} and {secret}")
    with pytest.raises(ValidationError, match="distinct characters"):
        SecretFormat(alphabet="0012345678", length=7)
    with pytest.raises(DataError, match="not a secret"):
        SecretFormat().index_of("12345a")


def test_insertion_appends_copies_with_stable_ids_and_one_group_per_canary() -> None:
    data = _data()
    out, record = insert_canaries(data, (1, 4, 16), per_repetition=4, seed=7)
    assert len(out) == len(data) + 4 * (1 + 4 + 16)
    assert out.texts[: len(data)] == data.texts
    assert out.ids[: len(data)].tolist() == data.ids.astype(str).tolist()
    assert np.array_equal(out.groups[: len(data)], data.groups)
    assert "canary-r16-03#c07" in out.ids.tolist()
    assert len(record.canaries) == 12 and record.repetition_counts == [1, 4, 16]
    assert len({c.secret for c in record.canaries}) == 12
    data_groups = set(data.groups.tolist())
    seen = set()
    for canary in record.canaries:
        assert re.fullmatch(r"canary-r(1|4|16)-0[0-3]", canary.canary_id)
        assert len(canary.positions) == canary.repetitions == len(canary.copy_ids)
        assert out.ids[list(canary.positions)].tolist() == list(canary.copy_ids)
        assert {out.texts[p] for p in canary.positions} == {canary.text}
        assert canary.text == f"my secret number is {canary.secret}"
        assert set(out.groups[list(canary.positions)].tolist()) == {canary.group}
        assert canary.group not in data_groups | seen
        assert np.count_nonzero(out.groups == canary.group) == canary.repetitions
        seen.add(canary.group)


def test_secrets_depend_on_the_seed_only_and_the_record_round_trips_json() -> None:
    _, record = insert_canaries(_data(), (1, 4), per_repetition=3, seed=11)
    _, again = insert_canaries(_data(20), (1, 4), per_repetition=3, seed=11)
    _, other = insert_canaries(_data(), (1, 4), per_repetition=3, seed=12)
    assert [c.secret for c in record.canaries] == [c.secret for c in again.canaries]
    assert [c.secret for c in record.canaries] != [c.secret for c in other.canaries]
    restored = CanaryRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert restored == record
    assert restored.secret_indices.tolist() == [int(c.secret) for c in record.canaries]


def test_bad_requests_are_refused_before_any_work() -> None:
    with pytest.raises(ConfigError, match="distinct counts of at least 1"):
        insert_canaries(_data(), (1, 1))
    with pytest.raises(ConfigError, match="distinct counts of at least 1"):
        insert_canaries(_data(), (0, 4))
    with pytest.raises(ConfigError, match="per_repetition must be at least 1"):
        insert_canaries(_data(), per_repetition=0)
    clash = TextDataset("x", ("a b", "c d"), np.array(["v1", "canary-r1-00#c00"]), np.arange(2))
    with pytest.raises(DataError, match="already holds ids starting with 'canary-r'"):
        insert_canaries(clash)
    twice, first = insert_canaries(_data(), (1,), per_repetition=2)
    with pytest.raises(DataError, match="give these canaries another name"):
        insert_canaries(twice, (1,), per_repetition=2)
    pins = SecretFormat(template="pin {secret}", length=4, exact_only=True)
    both, second = insert_canaries(twice, (4,), 2, secret_format=pins, name="pin")
    assert second.canaries[1].copy_ids[3] == "pin-r4-01#c03" and len(both) == len(twice) + 8
    assert min(c.group for c in second.canaries) > max(c.group for c in first.canaries)
    tiny = SecretFormat(alphabet="01", length=2, exact_only=True)
    with pytest.raises(ConfigError, match="need more secrets than the 4 there are"):
        insert_canaries(_data(), (1, 4), per_repetition=3, secret_format=tiny)


def test_the_canaries_alone_are_the_appended_copies_with_groups_from_zero() -> None:
    data = _data()
    alone, record = make_canaries((1, 4), per_repetition=2, seed=5)
    out, inserted = insert_canaries(data, (1, 4), per_repetition=2, seed=5)
    assert (
        alone.texts == out.texts[len(data) :]
        and alone.ids.tolist() == out.ids[len(data) :].tolist()
    )
    assert alone.groups.tolist() == [0, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    assert [c.positions for c in record.canaries][1:3] == [(1,), (2, 3, 4, 5)]
    shift = int(data.groups.max()) + 1
    for own, moved in zip(record.canaries, inserted.canaries, strict=True):
        assert (own.secret, own.copy_ids) == (moved.secret, moved.copy_ids)
        assert moved.group == own.group + shift
        assert moved.positions == tuple(p + len(data) for p in own.positions)
