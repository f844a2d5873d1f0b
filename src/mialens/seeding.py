"""One master seed controls everything: named, independent streams derived from it."""

from __future__ import annotations

import hashlib

import numpy as np


def _key_words(key: tuple[object, ...]) -> list[int]:
    digest = hashlib.sha256(repr(key).encode()).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def seed_sequence(seed: int, *key: object) -> np.random.SeedSequence:
    """The seed sequence of the stream named ``key`` under master ``seed``."""
    return np.random.SeedSequence(entropy=int(seed), spawn_key=_key_words(key))


def rng(seed: int, *key: object) -> np.random.Generator:
    """A numpy generator for the stream named ``key`` (e.g. ``rng(0, "split")``)."""
    return np.random.default_rng(seed_sequence(seed, *key))


def int_seed(seed: int, *key: object) -> int:
    """A 63-bit integer seed for the stream named ``key`` (e.g. for torch)."""
    state = seed_sequence(seed, *key).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)
