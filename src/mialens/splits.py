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


def _check_groups(groups: np.ndarray) -> np.ndarray:
    groups = np.asarray(groups)
    if groups.ndim != 1 or groups.dtype.kind not in "iu":
        raise ConfigError(
            f"groups must be one integer per sample; got {groups.dtype} {groups.shape}"
        )
    return groups


def make_group_split(
    groups: np.ndarray,
    seed: int,
    pool_size: int | None = None,
    test_size: int | None = None,
    population_size: int | None = None,
) -> Split:
    """:func:`make_split` over whole groups: no group has samples in both the pool and
    the test set (so a near duplicate of a pool sample never counts as unseen).

    The groups are shuffled with ``seed`` and taken in that order: the pool is the
    shortest run of groups holding at least ``pool_size`` samples (default 70% of the
    data), the test set the shortest run of groups after it holding at least
    ``test_size`` samples (default: all the rest), so sizes are met or exceeded by less
    than one group. The population, drawn from the test set as in :func:`make_split`,
    trains no model, so it may cut a group. No validation set (the text audit trains
    for fixed epochs).
    """
    groups = _check_groups(groups)
    n = len(groups)
    pool_n = pool_size if pool_size is not None else round(0.7 * n)
    names, index = np.unique(groups, return_inverse=True)
    if len(names) < 2 or not 1 <= pool_n < n:
        raise ConfigError(
            f"the data set has {n} samples in {len(names)} near-duplicate groups; a pool of "
            f"{pool_n} samples plus a test set needs at least 2 groups and audit.pool_size "
            f"between 1 and {n - 1}"
        )
    rank = np.empty(len(names), dtype=np.int64)
    rank[rng(seed, "group-split").permutation(len(names))] = np.arange(len(names))
    ordered = np.argsort(rank[index], kind="stable")  # the samples, group after group
    ranks = rank[index][ordered]
    pool_end = int(np.searchsorted(ranks, ranks[pool_n - 1], side="right"))
    rest_n = n - pool_end
    if rest_n < 1:
        raise ConfigError(
            f"a pool of at least {pool_n} samples takes every group of the data set ({n} "
            "samples), leaving no test set; lower audit.pool_size"
        )
    test_n = rest_n if test_size is None else test_size
    if test_n > rest_n:
        raise ConfigError(
            f"audit.test_size is {test_n} but the groups outside the pool hold {rest_n} "
            "samples; lower audit.test_size or audit.pool_size"
        )
    test_end = int(np.searchsorted(ranks, ranks[pool_end + test_n - 1], side="right"))
    pool, test = ordered[:pool_end], ordered[pool_end:test_end]
    if population_size is not None and population_size > len(test):
        raise ConfigError(
            f"audit.population_size is {population_size} but the test set it is drawn from "
            f"has {len(test)} samples; lower audit.population_size"
        )
    population = test
    if population_size is not None and population_size < len(test):
        population = np.sort(rng(seed, "population").choice(test, population_size, replace=False))
    return Split(pool, np.empty(0, dtype=np.int64), test, population)


def group_keep_mask(num_models: int, groups: np.ndarray, seed: int) -> np.ndarray:
    """:func:`keep_mask` drawn over groups: ``(num_models, len(groups))`` with every sample
    a member exactly when its group is.

    Models come in complementary pairs ``(2p, 2p + 1)``: a random half of the distinct
    groups trains model ``2p`` and the other half model ``2p + 1``, so every group is
    IN for exactly ``num_models / 2`` models (groups differ in size, so the two halves of
    a pair may hold different numbers of samples). Pair ``p`` depends only on
    ``(seed, p)`` and the groups (not their order), like :func:`keep_mask`.
    """
    groups = _check_groups(groups)
    names, index = np.unique(groups, return_inverse=True)
    if len(names) < 2:
        raise ConfigError("the pool holds a single near-duplicate group; it cannot be halved")
    return keep_mask(num_models, len(names), seed)[:, index]
