"""The design of a language-model audit: what its configuration derives before training.

:func:`prepare_text_audit` loads the text, splits it by near-duplicate groups (no group
in both the pool and the test set), halves the pool's groups into complementary
memberships (:func:`~mialens.splits.group_keep_mask`: a group is all IN or all OUT),
builds the tokenizer, encodes the query sets the attacks read and checks that they fit
the LM's context (``model.context``, or a pretrained ``model.hf``'s own, whose
vocabulary must also cover the tokenizer's), and derives every LM's store key. All of it
happens before any LM is trained, so a bad configuration fails in seconds.

``extra_pool`` is the seam for texts the audit adds to the pool itself (canaries):
they join the pool after the split, each text keeping its own group numbered after
the data's (give all copies of one canary one group), so each canary is IN for exactly
half of the LMs like any group. An ``audit.canaries`` section makes that pool itself:
the copies of :func:`~mialens.data.secret_canaries.make_canaries`, refused when they
would be more than half as many as the pool's own samples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from mialens.audit.text_settings import (
    HFModelConfig,
    TextAuditSpec,
    TextModelConfig,
    TokenizerConfig,
)
from mialens.data.catalog import dataset_info, load_dataset
from mialens.data.secret_canaries import CanaryRecord, make_canaries
from mialens.data.text import TextDataset
from mialens.data.tokenizers import BPETokenizer, ByteTokenizer, Tokenizer, load_tokenizer
from mialens.errors import ConfigError, DataError
from mialens.folders import writable_folder
from mialens.models.hf_folder import hf_weights_digest
from mialens.models.store import ModelStore, default_cache_dir, spec_key
from mialens.seeding import int_seed
from mialens.splits import Split, group_keep_mask, make_group_split

RECALL_SEPARATOR = "\n"


@dataclass(frozen=True)
class QuerySet:
    """Token rows ``(n, T)`` and lengths of one query set (start token included);
    ``skip`` leading scored positions are a prefix, not the sample (ReCaLL)."""

    tokens: np.ndarray
    lengths: np.ndarray
    skip: int = 0


@dataclass(frozen=True)
class TextAuditSetup:
    """What a text audit derives before training: the data (with any ``extra_pool``
    texts appended), its split, the pool's membership ``keep (M, n_pool)``, the
    tokenizer, the encoded query sets and the store."""

    config: TextAuditSpec
    dataset: TextDataset
    split: Split
    keep: np.ndarray
    tokenizer: Tokenizer
    queries: dict[str, QuerySet]
    store: ModelStore
    canaries: CanaryRecord | None = None

    @cached_property
    def natural(self) -> np.ndarray:
        """``(n_pool,)``: the pool samples that are the data's own (not canary copies)."""
        natural = np.ones(len(self.split.pool), dtype=bool)
        if self.canaries is not None:
            copies = {i for c in self.canaries.canaries for i in c.copy_ids}
            ids = self.dataset.ids[self.split.pool].astype(str)
            natural[[i for i, sid in enumerate(ids) if sid in copies]] = False
        return natural

    @property
    def num_models(self) -> int:
        return self.config.audit.num_models

    @cached_property
    def lm_config(self) -> Any:
        """The :class:`~mialens.models.causal_lm.CausalLMConfig` of every built-in LM."""
        from mialens.models.causal_lm import CausalLMConfig

        return CausalLMConfig(
            vocab_size=self.tokenizer.vocab_size, **self.config.model.model_dump()
        )

    @property
    def pretrained(self) -> HFModelConfig | None:
        """The ``model.hf`` section when every LM is a fine-tuned pretrained model."""
        model = self.config.model
        return model if isinstance(model, HFModelConfig) else None

    @cached_property
    def model_identity(self) -> dict[str, Any]:
        """What of the LMs' architecture their weights depend on: the built-in
        configuration, or the SHA-256 of the pretrained folder's config and weights."""
        if self.pretrained is not None:
            return {"hf_sha256": hf_weights_digest(self.pretrained.hf)}
        return self.lm_config.model_dump(mode="json")

    def train_rows(self, k: int) -> np.ndarray:
        """Rows of the ``plain`` query set (pool first) that train LM ``k``."""
        return np.flatnonzero(self.keep[k])

    def spec(self, k: int) -> dict[str, Any]:
        """Everything that determines LM ``k``'s weights (its store key hashes it)."""
        positions = self.split.pool[self.keep[k]].astype(np.int64)
        return {
            "kind": "causal-lm",
            "data": self.dataset.fingerprint,
            "train_positions": hashlib.sha256(positions.tobytes()).hexdigest(),
            "tokenizer": self.tokenizer.fingerprint,
            "model": self.model_identity,
            "train": self.config.train.model_dump(mode="json"),
            "seed": int_seed(self.config.audit.seed, "causal-lm", k),
        }

    @cached_property
    def keys(self) -> list[str]:
        return [spec_key(self.spec(k)) for k in range(self.num_models)]

    @property
    def population_rows(self) -> np.ndarray:
        """Rows of the ``plain`` query set holding the population samples."""
        where = {int(v): i for i, v in enumerate(self.split.test)}
        n_pool = len(self.split.pool)
        return np.array([n_pool + where[int(v)] for v in self.split.population], dtype=np.int64)

    def design(self) -> dict[str, Any]:
        """The design as the report and metrics.json record it."""
        split, pool_groups = self.split, self.dataset.groups[self.split.pool[self.natural]]
        return {
            "dataset": self.dataset.name,
            "num_models": self.num_models,
            "targets": self.num_models,
            "pool_size": int(self.natural.sum()),
            "pool_groups": int(np.unique(pool_groups).size),
            "test_size": len(split.test),
            "population_size": len(split.population),
            "membership": "by near-duplicate group (a group is all IN or all OUT)",
            "label": "the near-duplicate group of each sample (samples.csv)",
            "tokenizer": f"{self.config.tokenizer.kind} ({self.tokenizer.vocab_size} tokens)",
            "context": self.config.model.context,
            **({"base_model": str(self.pretrained.hf)} if self.pretrained else {}),
            "seed": self.config.audit.seed,
            "cache_dir": str(self.store.root.parent),
            **({"canary_copies": int((~self.natural).sum())} if self.canaries else {}),
        }


def _text_data(config: TextAuditSpec) -> TextDataset:
    if dataset_info(config.dataset.name).modality != "text":
        raise ConfigError(
            f"dataset {config.dataset.name!r} is not text: a text audit (tokenizer, LM) "
            "needs kjv, txt or jsonl"
        )
    return load_dataset(config.dataset)


def with_extra_pool(
    dataset: TextDataset, split: Split, extra: TextDataset | None
) -> tuple[TextDataset, Split]:
    """``dataset`` with ``extra``'s texts appended and added to the pool, their groups
    numbered after the data's (the canary seam of the module docstring)."""
    if extra is None:
        return dataset, split
    groups = np.concatenate([dataset.groups, dataset.groups.max() + 1 + extra.groups])
    ids = np.concatenate([dataset.ids.astype(str), extra.ids.astype(str)])
    combined = TextDataset(dataset.name, dataset.texts + extra.texts, ids, groups)
    added = np.arange(len(dataset), len(combined))
    return combined, Split(
        np.concatenate([split.pool, added]), split.validation, split.test, split.population
    )


def check_vocabulary(tokenizer: Tokenizer, model: TextModelConfig | HFModelConfig) -> None:
    """Refuse a tokenizer whose ids a pretrained model has no embedding for."""
    if isinstance(model, HFModelConfig) and tokenizer.vocab_size > model.vocab_size:
        raise ConfigError(
            f"the tokenizer has {tokenizer.vocab_size} tokens, more than the vocab_size "
            f"{model.vocab_size} of model.hf {model.hf}: use the tokenizer the model was "
            "trained with"
        )


def build_tokenizer(config: TokenizerConfig, texts: list[str]) -> Tokenizer:
    """Bytes; a BPE learned on ``texts`` (the pool and population: the BPE trainer draws
    nothing at random, so the same texts give the same tokenizer); or a HF folder."""
    if config.kind == "bytes":
        return ByteTokenizer()
    if config.kind == "bpe":
        return BPETokenizer.train(texts, config.vocab_size)
    return load_tokenizer(config.path)


def _padded(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    tokens = np.zeros((len(rows), int(lengths.max())), dtype=np.int64)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = row
    return tokens, lengths


def _too_long(model: TextModelConfig | HFModelConfig, needed: int, trained: bool) -> str:
    """What a sample of ``needed`` tokens exceeds, and how to make it fit."""
    windows = "cut the texts into windows (mialens.data.text.text_windows)"
    if trained:
        return (
            f"more than the LMs' context of {model.context}: the audit's LMs cannot score it; "
            f"shorten the texts or {windows}"
        )
    if isinstance(model, HFModelConfig):
        return (
            f"more than the context of model.hf, {model.context} tokens (its config.json); "
            f"{windows}"
        )
    return (
        f"more than model.context = {model.context}; raise model.context to at least "
        f"{needed}, or {windows}"
    )


def encode_query_set(
    tokenizer: Tokenizer,
    texts: list[str],
    ids: Sequence[str],
    model: TextModelConfig | HFModelConfig,
    what: str,
    prefix: list[int] = (),
    *,
    trained: bool = False,
) -> QuerySet:
    """The token rows ``[start, *prefix, *tokens(text)]`` of the samples ``ids``, refused
    (before any LM runs) when one is longer than the LMs' context or a text has no token.
    ``trained``: the LMs exist (dataset inference), so a text past their context is bad
    data (DataError: shorten it), not a configuration to change (ConfigError)."""
    rows = [[tokenizer.bos_id, *prefix, *tokenizer.encode(t)] for t in texts]
    sizes = [len(r) for r in rows]
    longest, shortest = int(np.argmax(sizes)), int(np.argmin(sizes))
    if sizes[longest] > model.context:
        error = DataError if trained else ConfigError
        raise error(
            f"{what}: sample {ids[longest]} needs {sizes[longest]} tokens (start token"
            f"{', prefix' if prefix else ''} and text), "
            f"{_too_long(model, sizes[longest], trained)}"
        )
    if sizes[shortest] < len(prefix) + 2:
        raise ConfigError(f"{what}: sample {ids[shortest]} encodes to no token")
    return QuerySet(*_padded(rows), skip=len(prefix))


def _queries(
    config: TextAuditSpec, tokenizer: Tokenizer, dataset: TextDataset, split: Split
) -> dict[str, QuerySet]:
    """The query sets the attacks read: ``plain`` (pool then test), ``lower`` and
    ``recall`` (pool) when an attack needs them."""
    model = config.model
    pool = [dataset.texts[i] for i in split.pool]
    plain = pool + [dataset.texts[i] for i in split.test]
    pool_ids = dataset.ids[split.pool].astype(str).tolist()
    plain_ids = pool_ids + dataset.ids[split.test].astype(str).tolist()
    attacks = config.audit.build_attacks()
    needed = {q for a in attacks for q in a.needs.queries}
    queries = {"plain": encode_query_set(tokenizer, plain, plain_ids, model, "the texts")}
    if "lower" in needed:
        lowered = [t.lower() for t in pool]
        queries["lower"] = encode_query_set(
            tokenizer, lowered, pool_ids, model, "the lowercased texts"
        )
    if "recall" in needed:
        shots = max(a.params.shots for a in attacks if "recall" in a.needs.queries)
        if shots > len(split.population):
            raise ConfigError(
                f"recall: shots = {shots} needs as many population samples; the audit has "
                f"{len(split.population)}"
            )
        prefix_text = "".join(dataset.texts[i] + RECALL_SEPARATOR for i in split.population[:shots])
        prefix = tokenizer.encode(prefix_text)
        queries["recall"] = encode_query_set(
            tokenizer, pool, pool_ids, model, "the ReCaLL queries", prefix
        )
    return queries


def _canary_pool(
    config: TextAuditSpec, extra_pool: TextDataset | None, natural_pool: int
) -> tuple[TextDataset | None, CanaryRecord | None]:
    """The extra pool: ``extra_pool``, or the copies of the ``audit.canaries`` section."""
    canaries = config.audit.canaries
    if canaries is None:
        return extra_pool, None
    if extra_pool is not None:
        raise ConfigError("give the canaries as audit.canaries or as extra_pool, not both")
    if 2 * canaries.copies > natural_pool:
        raise ConfigError(
            f"audit.canaries: {canaries.copies} canary copies (per_repetition "
            f"{canaries.per_repetition} x repetitions {canaries.repetitions}) are more than "
            f"half of the {natural_pool} pool samples; the LMs would learn mostly canaries: "
            "lower per_repetition or the repetitions, or raise audit.pool_size"
        )
    return make_canaries(
        canaries.repetitions, canaries.per_repetition, canaries.seed, canaries.secret_format
    )


def prepare_text_audit(
    config: TextAuditSpec, extra_pool: TextDataset | None = None
) -> TextAuditSetup:
    """Load and split the text, derive the membership, tokenizer, query sets and store
    (everything before training; see the module docstring for ``extra_pool``)."""
    settings = config.audit
    cache_dir = writable_folder(
        settings.cache_dir or default_cache_dir(),
        "audit.cache_dir" if settings.cache_dir else "the cache folder ($MIALENS_CACHE_DIR)",
    )
    data = _text_data(config)
    split = make_group_split(
        data.groups, settings.seed, settings.pool_size, settings.test_size, settings.population_size
    )
    extra_pool, record = _canary_pool(config, extra_pool, len(split.pool))
    dataset, split = with_extra_pool(data, split, extra_pool)
    keep = group_keep_mask(settings.num_models, dataset.groups[split.pool], settings.seed)
    seen = np.concatenate([split.pool, split.population])
    tokenizer = build_tokenizer(config.tokenizer, [dataset.texts[i] for i in seen])
    check_vocabulary(tokenizer, config.model)
    return TextAuditSetup(
        config=config,
        dataset=dataset,
        split=split,
        keep=keep,
        tokenizer=tokenizer,
        queries=_queries(config, tokenizer, dataset, split),
        store=ModelStore(cache_dir / "models"),
        canaries=record,
    )
