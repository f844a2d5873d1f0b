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
from typing import Any

import numpy as np

from mialens.attacks.text_attacks import TextSignals
from mialens.audit.text_design import QuerySet, TextAuditSetup
from mialens.errors import CacheError
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


def _builder(setup: TextAuditSetup) -> Callable[[], Any]:
    """A fresh LM before training: the built-in transformer, or the pretrained model."""
    if setup.pretrained is not None:
        from mialens.models.hf_adapter import load_hf_causal_lm

        folder = setup.pretrained.hf
        return lambda: load_hf_causal_lm(folder)
    from mialens.models.causal_lm import CausalTransformer

    return lambda: CausalTransformer(setup.lm_config)


def train_lms(
    setup: TextAuditSetup, on_model: Callable[[int], None] | None = None
) -> list[dict[str, Any]]:
    """Train every LM the store lacks (on its member rows of the ``plain`` query set) and
    store it; returns one training record per LM (``cached`` true when reused)."""
    from mialens.models.causal_lm import train_causal_lm

    store, plain, build = setup.store, setup.queries["plain"], _builder(setup)
    records = []
    for k, key in enumerate(setup.keys):
        manifest = _intact(store, key)
        if manifest is not None:
            records.append(_record(k, key, manifest.get("training", {}), True))
        else:
            spec, rows = setup.spec(k), setup.train_rows(k)
            result = train_causal_lm(
                build,
                plain.tokens[rows],
                plain.lengths[rows],
                setup.config.train,
                spec["seed"],
                setup.tokenizer.vocab_size,
                setup.config.audit.device,
            )
            training = {
                "epochs_run": setup.config.train.epochs,
                "seconds": result.seconds,
                "history": result.history,
            }
            store.save(key, result.state_dict, {"spec": spec, "training": training})
            records.append(_record(k, key, training, False))
        if on_model is not None:
            on_model(k)
    log.info("%d of %d LMs reused from the cache at %s", sum(r["cached"] for r in records),
             len(records), store.root)  # fmt: skip
    return records


def lm_loader(setup: TextAuditSetup) -> Callable[[str], Any]:
    """A function from a store key to that stored LM, on the audit's device."""
    build = _builder(setup)

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
