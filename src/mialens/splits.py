"""Experimental design: the audit pool, held-out sets and the models' membership mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mialens.errors import ConfigError
from mialens.seeding import rng


@dataclass(frozen=True)
class Split:
    """Positions into the data set of each disjoint part (population lies inside test)."""

    pool: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    population: np.ndarray


def make_split(
    n: int,
    seed: int,
    pool_size: int | None = None,
    val_size: int | None = None,
    test_size: int | None = None,
    population_size: int | None = None,
    need_validation: bool = False,
) -> Split:
    """Shuffle ``n`` positions with ``seed`` and cut the pool, validation and test sets.

    Defaults: pool 70% of the data; validation 20% of the rest when ``need_validation``
    (else none); test everything left; population the whole test set. Sizes that do not fit
    (including a population larger than the test set) are a :class:`ConfigError`.
    """
    pool_n = pool_size if pool_size is not None else round(0.7 * n)
    if n < 5:
        raise ConfigError(
            f"the data set has {n} samples, too few for an audit (it needs at least 5: a pool "
            "of 4 and one test sample)"
        )
    if not 4 <= pool_n < n:
        raise ConfigError(
            f"the data set has {n} samples; a pool of {pool_n} does not fit (the pool needs at "
            f"least 4 samples and the test set at least one): set audit.pool_size between 4 "
            f"and {n - 1}"
        )
    rest = n - pool_n
    val_n = val_size if val_size is not None else (max(1, rest // 5) if need_validation else 0)
    if need_validation and val_n == 0:
        raise ConfigError(
            "early stopping and adversarial regularisation need validation samples: set "
            "audit.val_size > 0"
        )
    test_n = test_size if test_size is not None else rest - val_n
    if val_n + max(test_n, 1) > rest:
        raise ConfigError(
            f"the data set has {n} samples: a pool of {pool_n} leaves {rest}, too few for "
            f"{val_n} validation and {max(test_n, 1)} test samples (the test set needs at "
            "least one); lower audit.pool_size, audit.val_size or audit.test_size"
        )
    if population_size is not None and population_size > test_n:
        raise ConfigError(
            f"audit.population_size is {population_size} but the test set it is drawn from "
            f"has {test_n} samples; lower audit.population_size (or leave it unset for the "
            "whole test set)"
        )
    order = rng(seed, "split").permutation(n)
    pool = order[:pool_n]
    validation = order[pool_n : pool_n + val_n]
    test = order[pool_n + val_n : pool_n + val_n + test_n]
    if population_size is None or population_size == test_n:
        population = test
    else:
        population = np.sort(rng(seed, "population").choice(test, population_size, replace=False))
    return Split(pool, validation, test, population)


def keep_mask(num_models: int, pool_size: int, seed: int) -> np.ndarray:
    """Membership of every pool sample in every model: a ``(num_models, pool_size)`` bool mask.

    Models come in complementary pairs ``(2p, 2p + 1)``: a random half of the pool trains
    model ``2p`` and the other half model ``2p + 1``, so every sample is a member of
    exactly ``num_models / 2`` models. Pair ``p`` depends only on ``(seed, p)``, so the
    first models of a larger audit are the models of a smaller one.
    """
    if num_models < 2 or num_models % 2:
        raise ConfigError(f"num_models must be even and at least 2; got {num_models}")
    mask = np.zeros((num_models, pool_size), dtype=bool)
    for p in range(num_models // 2):
        order = rng(seed, "keep", p).permutation(pool_size)
        half = order[: pool_size // 2] if p % 2 == 0 else order[: (pool_size + 1) // 2]
        mask[2 * p, half] = True
        mask[2 * p + 1] = ~mask[2 * p]
    return mask
