"""The LMs of a text audit: trained through the model store (a rerun trains nothing), and
their per-token log-probabilities on every query set, computed once per LM and query
set and cached in its store entry (:mod:`mialens.signals.token_logprobs`).

An LM is the built-in :class:`~mialens.models.causal_lm.CausalTransformer` trained from
scratch, or (``model: {hf: folder}``) the pretrained model of the folder fine-tuned on
the member half, the reference recipe for such models; a stored fine-tuned LM is its
weights loaded into a freshly loaded base model."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mialens.attacks.text_attacks import TextSignals
from mialens.audit.executor import map_tasks
from mialens.audit.text_design import QuerySet, TextAuditSetup
from mialens.errors import CacheError
from mialens.models.lm_config import CausalLMConfig, LMTrainConfig
from mialens.models.store import ModelStore
from mialens.signals.token_logprobs import TokenLogProbs, models_token_logprobs

log = logging.getLogger(__name__)


def _record(k: int, key: str, training: dict[str, Any], cached: bool) -> dict[str, Any]:
    keys = ("epochs_run", "seconds")
    return {**{n: training.get(n) for n in keys}, "model": k, "key": key, "cached": cached}


def _intact(store: ModelStore, key: str) -> dict[str, Any] | None:
    """The manifest of ``key`` if its entry and weights are intact, else None (a corrupt
    entry is moved aside, so that its LM is retrained and its statistics recomputed)."""
    if not store.has(key):
        return None
    try:
        return store.load(key)[1]
    except CacheError as exc:
        log.warning("%s", exc)
        store.discard(key)
        return None


def _builder(lm_config: CausalLMConfig | None, hf_folder: Path | None) -> Callable[[], Any]:
    """A fresh LM before training: the built-in transformer of ``lm_config``, or the
    pretrained model of ``hf_folder``."""
    if hf_folder is not None:
        from mialens.models.hf_adapter import load_hf_causal_lm

        return lambda: load_hf_causal_lm(hf_folder)
    from mialens.models.causal_lm import CausalTransformer

    return lambda: CausalTransformer(lm_config)


def _setup_builder(setup: TextAuditSetup) -> Callable[[], Any]:
    if setup.pretrained is not None:
        return _builder(None, setup.pretrained.hf)
    return _builder(setup.lm_config, None)


@dataclass(frozen=True)
class _LMTraining:
    """What every LM's training task shares (put once into Ray's object store): the
    ``plain`` query set's tokens, the recipe and the store the weights go to."""

    tokens: np.ndarray
    lengths: np.ndarray
    train: LMTrainConfig
    vocab_size: int
    device: str
    lm_config: CausalLMConfig | None
    hf_folder: Path | None
    store: ModelStore


@dataclass(frozen=True)
class _LMTask:
    model: int
    key: str
    rows: np.ndarray
    spec: dict[str, Any]


def _train_lm(context: _LMTraining, task: _LMTask) -> dict[str, Any]:
    """Train one LM and store it (in this process or a Ray worker, on one thread);
    returns its training record."""
    from mialens.models.causal_lm import train_causal_lm

    result = train_causal_lm(
        _builder(context.lm_config, context.hf_folder),
        context.tokens[task.rows],
        context.lengths[task.rows],
        context.train,
        task.spec["seed"],
        context.vocab_size,
        context.device,
    )
    training = {
        "epochs_run": context.train.epochs,
        "seconds": result.seconds,
        "history": result.history,
    }
    context.store.save(task.key, result.state_dict, {"spec": task.spec, "training": training})
    return training


def train_lms(
    setup: TextAuditSetup, on_model: Callable[[int], None] | None = None
) -> list[dict[str, Any]]:
    """Train every LM the store lacks (on its member rows of the ``plain`` query set), each
    a task of the configured executor that stores its LM when done (a killed run keeps
    the finished ones), and return one training record per LM (``cached`` true when
    reused). ``on_model(k)`` is called as each LM is ready."""
    store, plain = setup.store, setup.queries["plain"]
    records: dict[int, dict[str, Any]] = {}
    tasks = []
    for k, key in enumerate(setup.keys):
        manifest = _intact(store, key)
        if manifest is not None:
            records[k] = _record(k, key, manifest.get("training", {}), True)
            if on_model is not None:
                on_model(k)
        else:
            tasks.append(_LMTask(k, key, setup.train_rows(k), setup.spec(k)))
    pretrained = setup.pretrained
    context = _LMTraining(
        tokens=plain.tokens,
        lengths=plain.lengths,
        train=setup.config.train,
        vocab_size=setup.tokenizer.vocab_size,
        device=setup.config.audit.device,
        lm_config=None if pretrained is not None else setup.lm_config,
        hf_folder=None if pretrained is None else pretrained.hf,
        store=store,
    )

    def done(task: _LMTask, training: dict[str, Any]) -> None:
        records[task.model] = _record(task.model, task.key, training, False)
        if on_model is not None:
            on_model(task.model)

    if tasks:
        map_tasks(_train_lm, context, tasks, setup.config.executor, on_done=done)
    log.info("%d of %d LMs reused from the cache at %s", len(records) - len(tasks),
             len(records), store.root)  # fmt: skip
    return [records[k] for k in range(len(setup.keys))]


def lm_loader(setup: TextAuditSetup) -> Callable[[str], Any]:
    """A function from a store key to that stored LM, on the audit's device."""
    build = _setup_builder(setup)

    def load(key: str) -> Any:
        state, _ = setup.store.load(key)
        model = build()
        model.load_state_dict(state)
        return model.to(setup.config.audit.device)

    return load


def query_statistics(setup: TextAuditSetup, query: QuerySet) -> TokenLogProbs:
    """The cached statistics of every LM on ``query`` ``(M, n, T-1)``, the prefix cut
    off (its first ``skip`` scored positions)."""
    stats = models_token_logprobs(
        setup.store,
        setup.keys,
        lm_loader(setup),
        query.tokens,
        query.lengths,
        setup.tokenizer.vocab_size,
        setup.config.audit.batch_size,
    )
    if not query.skip:
        return stats
    cut = [a[:, :, query.skip :] for a in (stats.logprob, stats.mean, stats.var)]
    return TokenLogProbs(*cut, lengths=stats.lengths - query.skip)


def _rows(stats: TokenLogProbs, rows: np.ndarray) -> TokenLogProbs:
    lengths = stats.lengths[rows]
    width = int(lengths.max())
    part = [a[:, rows, :width] for a in (stats.logprob, stats.mean, stats.var)]
    return TokenLogProbs(*part, lengths=lengths)


def text_signals(setup: TextAuditSetup) -> tuple[TextSignals, TokenLogProbs]:
    """The attacks' signals on the pool, and the ``plain`` statistics of pool and test
    set (for utility)."""
    plain = query_statistics(setup, setup.queries["plain"])
    n_pool = len(setup.split.pool)
    extra = {name: query_statistics(setup, setup.queries[name]) for name in ("lower", "recall")
             if name in setup.queries}  # fmt: skip
    signals = TextSignals(
        texts=tuple(setup.dataset.texts[i] for i in setup.split.pool),
        member=setup.keep,
        plain=_rows(plain, np.arange(n_pool)),
        population=_rows(plain, setup.population_rows),
        **extra,
    )
    return signals, plain


def mean_token_loss(stats: TokenLogProbs, model: int, rows: np.ndarray) -> float:
    """LM ``model``'s mean next-token loss (nats per token, over all tokens of ``rows``)."""
    lengths = stats.lengths[rows]
    mask = np.arange(stats.logprob.shape[2]) < lengths[:, None]
    return float(-np.where(mask, stats.logprob[model, rows], 0.0).sum() / lengths.sum())
