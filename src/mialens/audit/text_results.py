"""A text audit's :class:`~mialens.audit.results.AuditResult`: the scores of every text
attack on every target LM, with the LMs' utility as next-token loss.

Canary copies (``audit.canaries``) are left out of it: its metrics, samples.csv and
utility are those of the data's own samples, and the canaries are reported on their own
(:mod:`mialens.audit.text_canaries`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mialens.attacks.text_attacks import TextAttack
from mialens.audit.results import AuditResult, attack_info
from mialens.audit.text_design import TextAuditSetup
from mialens.audit.text_models import mean_token_loss
from mialens.metrics.intervals import summarize
from mialens.signals.token_stats import TokenLogProbs


def lm_utility(setup: TextAuditSetup, plain: TokenLogProbs) -> dict[str, Any]:
    """Each LM's mean token loss (nats) on its members and on the test set, the gap, and
    the perplexities ``exp(loss)``: the utility of an LM, in place of accuracy."""
    n_pool = len(setup.split.pool)
    test = np.arange(n_pool, n_pool + len(setup.split.test))
    members = setup.keep & setup.natural
    train = [mean_token_loss(plain, k, np.flatnonzero(m)) for k, m in enumerate(members)]
    held_out = [mean_token_loss(plain, k, test) for k in range(setup.num_models)]
    gap = [te - tr for tr, te in zip(train, held_out, strict=True)]
    entries = {
        "train_loss": train,
        "test_loss": held_out,
        "loss_gap": gap,
        "train_perplexity": np.exp(train).tolist(),
        "test_perplexity": np.exp(held_out).tolist(),
    }
    utility: dict[str, Any] = {
        name: {**summarize(values), "per_target": values} for name, values in entries.items()
    }
    utility["test_source"] = "held-out test set (whole near-duplicate groups)"
    return utility


def text_result(
    setup: TextAuditSetup,
    attacks: list[TextAttack],
    scores: dict[str, np.ndarray],
    plain: TokenLogProbs,
    training: list[dict[str, Any]],
) -> AuditResult:
    """The audit's result on the data's own samples (metrics by
    :meth:`AuditResult.compute_metrics`); the label column holds each sample's
    near-duplicate group."""
    natural = setup.natural
    pool = setup.split.pool[natural]
    result = AuditResult(
        sample_ids=setup.dataset.ids[pool],
        labels=setup.dataset.groups[pool],
        members=setup.keep[:, natural],
        target_models=list(range(setup.num_models)),
        scores={name: s[:, natural] for name, s in scores.items()},
        attacks={a.name: attack_info(a, float(len(a.needs.queries))) for a in attacks},
        fpr_levels=list(setup.config.audit.fpr),
        config=setup.config.model_dump(mode="json"),
        design=setup.design(),
        training=training,
    )
    result.utility = lm_utility(setup, plain)
    return result
