"""Near-duplicate groups: the containment rule, exact pair search, and grouping."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mialens.data.near_duplicates import (
    containment,
    near_duplicate_groups,
    normalise,
    shingles,
    similar_pairs,
)
from mialens.errors import ConfigError


def test_normalise_ignores_case_and_punctuation() -> None:
    assert normalise("O give thanks, unto the LORD;") == (
        "o",
        "give",
        "thanks",
        "unto",
        "the",
        "lord",
    )


def test_shingles_of_short_and_long_texts() -> None:
    assert shingles("a b", 3) == frozenset([("a", "b")])
    assert shingles("a b c d", 3) == frozenset([("a", "b", "c"), ("b", "c", "d")])


def test_containment_is_the_share_of_the_larger_set() -> None:
    a, b = frozenset("abcd"), frozenset("cdef")
    assert containment(a, b) == pytest.approx(2 / 4)
    assert containment(frozenset("ab"), frozenset("abcdef")) == pytest.approx(2 / 6)
    assert containment(frozenset(), frozenset()) == 1.0


def test_prefix_filtering_finds_exactly_the_brute_force_pairs() -> None:
    generator = np.random.default_rng(3)
    words = np.array(["lord", "mercy", "ever", "king", "day", "son", "gold", "ram"])
    texts = [" ".join(generator.choice(words, generator.integers(2, 9))) for _ in range(80)]
    sets = [shingles(t, 2) for t in texts]
    for threshold in (0.2, 0.35, 0.6, 1.0):
        brute = [
            (i, j)
            for i, j in itertools.combinations(range(len(texts)), 2)
            if containment(sets[i], sets[j]) >= threshold
        ]
        assert sorted(similar_pairs(texts, threshold, k=2)) == brute


def test_groups_are_connected_components_numbered_by_first_appearance() -> None:
    texts = [
        "one silver charger of an hundred and thirty shekels for Nahshon",  # 0
        "the sun to rule by day",  # 1
        "one silver charger of an hundred and thirty shekels for Nethaneel",  # 2
        "One silver charger, of an hundred and thirty shekels, for Eliab!",  # 3
        "the moon and stars to rule by night",  # 4
        "THE SUN TO RULE BY DAY.",  # 5: an exact normalised duplicate of 1
    ]
    assert near_duplicate_groups(texts).tolist() == [0, 1, 0, 0, 2, 1]


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        similar_pairs(["a"], threshold=0.0)
    with pytest.raises(ConfigError, match="shingle"):
        similar_pairs(["a"], k=0)
