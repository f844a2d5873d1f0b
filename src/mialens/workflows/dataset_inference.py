"""Dataset inference on a finished text audit: was a suspect collection of texts, as a
whole, in the training data of one of the audit's LMs?

Maini, Jia, Papernot & Dziedzic (2024), "LLM Dataset Inference: Did you train on my
dataset?" (arXiv:2406.06443). :func:`run_dataset_inference` reads the suspect texts and
validation texts known to be out, drawn like them (``.txt``, one text a line, or
``.jsonl``), rebuilds the audit's design from its recorded configuration (its tokenizer,
its LMs in the model cache) and checks everything before any LM runs: the files, the
number of texts, the run, the LM index, and that every text fits the LMs' context. The
blind baseline (:mod:`mialens.metrics.blind_baseline`, Das et al. 2024) then asks
whether the two sets can be told apart without the model; a pair it tells apart is
refused (``allow_shift`` runs the test anyway, warns and records it). The features of
the test are the target LM's scores of the reference-free text attacks the audit ran
(LOSS, Zlib, Lowercase, Min-K%, Min-K%++, ReCaLL: :mod:`mialens.attacks.text_attacks`,
with the audit's parameters; ReCaLL's prefix is the audit's population texts), from the
per-token log-probabilities of :mod:`mialens.signals.token_logprobs` (cached in the
model store); :func:`~mialens.analysis.dataset_inference.dataset_inference` runs the
test.

``reference=True`` adds the reference ratio (Carlini et al. 2021, Sec. 6.1) with every
other LM of the audit as the reference. The test then stays valid only when none of
those LMs trained on the suspect or validation texts (Maini et al.'s reference models
are trained on other data); a text of the audit's pool trained half of them, so the
feature is off by default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mialens.analysis.dataset_inference import (
    MIN_TEXTS,
    DatasetInference,
    check_shift,
    dataset_inference,
)
from mialens.attacks.text_attacks import TextAttack, TextSignals, build_text_attack
from mialens.audit.text_design import (
    RECALL_SEPARATOR,
    QuerySet,
    TextAuditSetup,
    encode_query_set,
    prepare_text_audit,
)
from mialens.audit.text_models import query_statistics
from mialens.audit.text_settings import BlindBaselineSettings, TextAuditSpec
from mialens.data.download import file_sha256
from mialens.data.near_duplicates import near_duplicate_groups
from mialens.data.text import TextDataset, load_jsonl, load_txt
from mialens.errors import CacheError, ConfigError, DataError
from mialens.folders import writable_folder
from mialens.io import write_json
from mialens.metrics.blind_baseline import BlindBaseline, blind_baseline
from mialens.workflows.config import validate_config
from mialens.workflows.outputs import load_result

RESULT_FILE = "dataset_inference.json"
DEFAULT_DIR = "dataset_inference"  # inside the run folder
PAPER = (
    "Maini, Jia, Papernot & Dziedzic 2024, LLM Dataset Inference: Did you train on my "
    "dataset? (arXiv:2406.06443)"
)


@dataclass(frozen=True)
class DatasetInferenceRun:
    """The test's outcome and its ``dataset_inference.json`` record."""

    inference: DatasetInference
    record: dict[str, Any]


def read_texts(path: str | os.PathLike, what: str, text_field: str = "text") -> TextDataset:
    """The texts of a ``.txt`` file (one a line) or a ``.jsonl`` file (under ``text_field``)."""
    path = Path(path)
    if path.suffix not in (".txt", ".jsonl"):
        raise DataError(
            f"{what} {path}: give a .txt file (one text a line) or a .jsonl file (one JSON "
            f"object a line, the text under {text_field!r})"
        )
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist")
    return load_txt(path) if path.suffix == ".txt" else load_jsonl(path, field=text_field)


def text_audit_spec(run_dir: str | os.PathLike) -> TextAuditSpec:
    """The recorded configuration of the text audit in ``run_dir`` (refused if it is not one)."""
    config = dict(load_result(run_dir).config)
    if "tokenizer" not in config:
        raise DataError(
            f"{run_dir} holds a classifier audit, not a text audit: dataset inference scores "
            "texts with a text audit's LMs (run `mialens audit` on a text configuration, "
            "e.g. examples/text_kjv_small.yaml)"
        )
    return validate_config(config, TextAuditSpec)


def _check_sizes(
    spec: TextAuditSpec, sets: dict[str, TextDataset], paths: dict[str, Path], model: int
) -> None:
    """Refuse a set too small for the gate's folds and the test, or an unknown ``model``."""
    folds = (spec.audit.blind_baseline or BlindBaselineSettings()).folds
    need = max(MIN_TEXTS, 2 * folds)
    for what, data in sets.items():
        if len(data) < need:
            raise DataError(
                f"the {what} file {paths[what]} holds {len(data)} texts; dataset inference "
                f"needs at least {need} per set (the blind baseline's {folds}-fold "
                f"cross-validation takes {2 * folds}, the t-test {MIN_TEXTS})"
            )
    count = spec.audit.num_models
    if not 0 <= model < count:
        raise ConfigError(f"model {model} is not an LM of the audit, which trained {count} "
                          f"(give 0 to {count - 1})")  # fmt: skip


def _check_cache(setup: TextAuditSetup) -> None:
    missing = [key for key in setup.keys if not setup.store.has(key)]
    if missing:
        raise CacheError(
            f"{len(missing)} of {len(setup.keys)} LMs of this audit are not in the model cache "
            f"{setup.store.root}: point MIALENS_CACHE_DIR (or audit.cache_dir) at the run's "
            "cache, or re-run `mialens audit` with this run's configuration"
        )


def feature_attacks(setup: TextAuditSetup, reference: bool) -> list[TextAttack]:
    """The audit's reference-free text attacks (their scores are the features), and the
    reference ratio when ``reference``."""
    attacks = [a for a in setup.config.audit.build_attacks() if a.needs.references == "none"]
    if reference:
        attacks.append(build_text_attack("reference"))
    if not attacks:
        raise ConfigError(
            "the audit ran no reference-free text attack (loss, zlib, lowercase, min_k, "
            "min_k_plus_plus, recall), whose scores are the features: pass reference=True "
            "(--reference), or audit with one of them"
        )
    return attacks


def _encoded(
    setup: TextAuditSetup, data: TextDataset, what: str, texts: list[str], prefix: list[int] = ()
) -> QuerySet:
    """The token rows of ``texts`` (``data``'s, maybe changed), refused when one is longer
    than the LMs' context (they cannot score it)."""
    ids = data.ids.astype(str).tolist()
    model = setup.config.model
    return encode_query_set(setup.tokenizer, texts, ids, model, what, list(prefix), trained=True)


def _queries(
    setup: TextAuditSetup, data: TextDataset, what: str, attacks: list[TextAttack]
) -> dict[str, QuerySet]:
    """The query sets of ``data`` that ``attacks`` read, as the audit builds its own."""
    needed = {q for a in attacks for q in a.needs.queries}
    texts = list(data.texts)
    queries = {"plain": _encoded(setup, data, f"the {what} texts", texts)}
    if "lower" in needed:
        lowered = [t.lower() for t in texts]
        queries["lower"] = _encoded(setup, data, f"the lowercased {what} texts", lowered)
    if "recall" in needed:
        shots = max(a.params.shots for a in attacks if "recall" in a.needs.queries)
        population = setup.split.population[:shots]
        prefix_text = "".join(setup.dataset.texts[i] + RECALL_SEPARATOR for i in population)
        prefix = setup.tokenizer.encode(prefix_text)
        queries["recall"] = _encoded(setup, data, f"the {what} ReCaLL queries", texts, prefix)
    return queries


def _features(
    setup: TextAuditSetup,
    attacks: list[TextAttack],
    data: TextDataset,
    queries: dict[str, QuerySet],
    model: int,
) -> np.ndarray:
    """``(texts, attacks)``: LM ``model``'s scores. No LM counts as trained on the texts
    (``member`` all false), which only the reference ratio reads (every other LM)."""
    stats = {name: query_statistics(setup, query) for name, query in queries.items()}
    member = np.zeros((setup.num_models, len(data)), dtype=bool)
    signals = TextSignals(texts=data.texts, member=member, **stats)
    return np.column_stack([attack.score(signals, model) for attack in attacks])


def shift_gate(setup: TextAuditSetup, suspect: TextDataset, validation: TextDataset,
               seed: int) -> BlindBaseline:  # fmt: skip
    """The blind baseline of suspect (as members) against validation texts, with the
    audit's gate settings, near duplicates across both sets in one fold."""
    settings = setup.config.audit.blind_baseline or BlindBaselineSettings()
    groups = near_duplicate_groups(list(suspect.texts) + list(validation.texts))
    return blind_baseline(suspect.texts, validation.texts, seed=seed, folds=settings.folds,
                          level=settings.level, groups=groups.tolist())  # fmt: skip


def _source(path: Path, data: TextDataset) -> dict[str, Any]:
    return {"path": str(path), "sha256": file_sha256(path), "texts": len(data)}


def run_dataset_inference(
    run_dir: str | os.PathLike,
    suspect: str | os.PathLike,
    validation: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    alpha: float = 0.05,
    seed: int = 0,
    model: int = 0,
    allow_shift: bool = False,
    reference: bool = False,
    text_field: str = "text",
) -> DatasetInferenceRun:
    """Dataset inference (Maini et al. 2024; module docstring): did LM ``model`` of the
    text audit in ``run_dir`` train on the ``suspect`` texts, against ``validation``
    texts known to be out? Writes ``out_dir/dataset_inference.json`` (by default in
    ``run_dir/dataset_inference``); ``text_field`` is the text's field in ``.jsonl``."""
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie strictly between 0 and 1; got {alpha}")
    paths = {"suspect": Path(suspect), "validation": Path(validation)}
    sets = {what: read_texts(path, f"the {what} file", text_field) for what, path in paths.items()}
    spec = text_audit_spec(run_dir)
    _check_sizes(spec, sets, paths, model)
    out = writable_folder(
        Path(run_dir) / DEFAULT_DIR if out_dir is None else out_dir, "the output folder"
    )
    setup = prepare_text_audit(spec)
    _check_cache(setup)
    attacks = feature_attacks(setup, reference)
    queries = {what: _queries(setup, data, what, attacks) for what, data in sets.items()}
    gate = shift_gate(setup, sets["suspect"], sets["validation"], seed)
    shifted = check_shift(gate, len(sets["suspect"]), len(sets["validation"]), allow_shift)
    features = {w: _features(setup, attacks, sets[w], queries[w], model) for w in sets}
    names = [a.name for a in attacks]
    inference = dataset_inference(
        features["suspect"], features["validation"], seed, alpha, feature_names=names
    )
    inference = replace(inference, shift_allowed=shifted, blind_baseline=gate)
    record = {
        "paper": PAPER,
        "question": f"did LM {model} of the audit train on the suspect texts, as a whole?",
        "run_dir": str(run_dir),
        "model": model,
        "model_key": setup.keys[model],
        **{what: _source(path, sets[what]) for what, path in paths.items()},
        "features": [{"name": a.name, **a.params.model_dump(mode="json")} for a in attacks],
        **inference.to_json(),
    }
    write_json(out / RESULT_FILE, record)
    return DatasetInferenceRun(inference, record)
