"""The text audit's distribution-shift gate (Das, Zhang & Tramèr 2024, arXiv:2406.16201).

Before the report, the model-free classifier of :mod:`mialens.metrics.blind_baseline`
is cross-validated on member versus non-member texts. By default those are the audit's
own: the natural pool texts (canary copies left out) that are members of target 0
against its natural pool non-members, the very sets its headline metrics are scored
on, with the pool's near-duplicate groups as ``groups`` so that copies share a fold.
The audit's group split is random, so this gate is expected to stay quiet; it fires on
a design that is not (a bug). User-supplied texts (``supplied_texts`` in the
configuration, or ``member_texts`` / ``nonmember_texts`` of
:func:`~mialens.workflows.text_audit.run_text_audit`) replace them: there the gate
checks a member / non-member benchmark before anyone attacks a model on it, grouped by
their near duplicates across both sets. The gate is seeded from the audit seed;
``blind_baseline.source`` in metrics.json says which texts it saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mialens.audit.text_design import TextAuditSetup
from mialens.audit.text_settings import SuppliedTexts
from mialens.data.near_duplicates import near_duplicate_groups
from mialens.data.text import TextDataset, load_jsonl, load_txt
from mialens.errors import ConfigError
from mialens.metrics.blind_baseline import blind_baseline

DESIGN_SOURCE = "design: target 0's natural pool members against its natural pool non-members"
ARGUMENT_SOURCE = "supplied: member_texts and nonmember_texts of run_text_audit"


def design_texts(setup: TextAuditSetup) -> tuple[list[str], list[str], np.ndarray]:
    """Target 0's natural pool members, its natural pool non-members (canary copies left
    out, as from the headline metrics), and their near-duplicate groups (members first)."""
    natural = setup.natural
    pool, keep = setup.split.pool[natural], setup.keep[0][natural]
    members, nonmembers = pool[keep], pool[~keep]
    texts = setup.dataset.texts
    groups = np.concatenate([setup.dataset.groups[members], setup.dataset.groups[nonmembers]])
    return [texts[i] for i in members], [texts[i] for i in nonmembers], groups


def _read(path: Any, text_field: str) -> TextDataset:
    return load_txt(path) if path.suffix == ".txt" else load_jsonl(path, field=text_field)


def read_supplied(supplied: SuppliedTexts) -> tuple[list[str], list[str]]:
    """The member and non-member texts of a ``supplied_texts`` section."""
    members = _read(supplied.members, supplied.text_field)
    nonmembers = _read(supplied.nonmembers, supplied.text_field)
    return list(members.texts), list(nonmembers.texts)


def gate_texts(
    setup: TextAuditSetup,
    member_texts: Sequence[str] | None = None,
    nonmember_texts: Sequence[str] | None = None,
) -> tuple[list[str], list[str], np.ndarray, str]:
    """The gate's members, non-members, groups and source: the arguments, else the
    configuration's ``supplied_texts``, else the design's (see the module docstring)."""
    supplied = setup.config.supplied_texts
    if (member_texts is None) != (nonmember_texts is None):
        raise ConfigError("give both member_texts and nonmember_texts, or neither")
    if member_texts is not None and supplied is not None:
        raise ConfigError(
            "member_texts and nonmember_texts replace the configuration's supplied_texts: "
            "give one of them"
        )
    if member_texts is not None:
        members, nonmembers, source = list(member_texts), list(nonmember_texts), ARGUMENT_SOURCE
    elif supplied is not None:
        members, nonmembers = read_supplied(supplied)
        source = f"supplied: {supplied.members} against {supplied.nonmembers}"
    else:
        return *design_texts(setup), DESIGN_SOURCE
    return members, nonmembers, near_duplicate_groups(members + nonmembers), source


def run_gate(
    setup: TextAuditSetup,
    member_texts: Sequence[str] | None = None,
    nonmember_texts: Sequence[str] | None = None,
) -> dict[str, Any] | None:
    """The ``blind_baseline`` entry of metrics.json (its verdict plus ``source``), or
    None when ``audit.blind_baseline`` is false."""
    settings = setup.config.audit.blind_baseline
    if settings is None:
        if member_texts is not None or nonmember_texts is not None:
            raise ConfigError(
                "member_texts and nonmember_texts feed the blind baseline: drop "
                "audit.blind_baseline: false"
            )
        return None
    members, nonmembers, groups, source = gate_texts(setup, member_texts, nonmember_texts)
    verdict = blind_baseline(
        members,
        nonmembers,
        seed=setup.config.audit.seed,
        folds=settings.folds,
        level=settings.level,
        groups=groups.tolist(),
    )
    return {**verdict.to_json(), "source": source}
