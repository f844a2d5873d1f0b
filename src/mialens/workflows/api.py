"""Audit a model the user already trained, or a DP-SGD recipe's privacy (:func:`dp_audit`).

The target can be a PyTorch module, a scikit-learn classifier with ``predict_proba``, a
callable returning logits or probabilities, or precomputed logits. Reference models
follow the user's recipe: a function ``train_reference(x, y, seed) -> model`` (any of
the queryable kinds), by default a fresh clone of a scikit-learn target; or precomputed
reference logits with their membership.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mialens.attacks.base import Attack, QueryData
from mialens.attacks.registry import DEFAULT_ATTACKS, build_attack
from mialens.audit.engine import ModelOutputs, Scores, accuracy, score_targets
from mialens.audit.fidelity import data_sha256, reference_fidelity, train_recipe
from mialens.audit.results import AuditResult, attack_info
from mialens.errors import ConfigError, DataError
from mialens.folders import writable_folder
from mialens.models.architectures import ModelConfig, build_model
from mialens.models.recipe import TrainConfig
from mialens.models.training import fixed_threads, train_model
from mialens.seeding import int_seed
from mialens.signals.queries import (
    QueryConfig,
    collect_logits,
    transforms_for,
)
from mialens.splits import keep_mask
from mialens.targets.adapters import OutputKind, Target, as_target, read_outputs
from mialens.validation import (
    check_features,
    check_fpr_levels,
    check_ids,
    check_labels,
    check_logits,
    check_member_mask,
    check_multiclass,
)
from mialens.workflows.config import DPAuditConfig, load_config, validate_config
from mialens.workflows.dp_audit import DPAuditReport, run_dp_audit
from mialens.workflows.outputs import write_outputs
from mialens.workflows.progress import ProgressHook, progress_hook, step_counter

log = logging.getLogger(__name__)

DEFAULT_FPR = (0.1, 0.01, 0.001, 0.0001)
TrainFn = Callable[[np.ndarray, np.ndarray, int], Any]


@dataclass(frozen=True)
class Recipe:
    """A reference recipe: ``fit(x, y, seed) -> model`` and the ``record`` of what it
    does (loss, optimizer, schedule, augmentation, ...), kept in the audit's fidelity
    record. Called like ``fit``."""

    fit: TrainFn
    record: dict[str, Any]

    def __call__(self, x: np.ndarray, y: np.ndarray, seed: int) -> Any:
        return self.fit(x, y, seed)


def estimator_record(estimator: Any) -> dict[str, Any]:
    """The recipe record of a scikit-learn-style estimator: its class and parameters
    (values that are not plain numbers or strings by their repr; ``random_state`` left
    out, since each reference gets its own)."""
    kind = type(estimator)
    params = {
        name: value if value is None or isinstance(value, bool | int | float | str) else repr(value)
        for name, value in estimator.get_params(deep=False).items()
        if name != "random_state"
    }
    return {"estimator": f"{kind.__module__}:{kind.__qualname__}", "params": params}


def sklearn_recipe(estimator: Any) -> Recipe:
    """Reference recipe for a scikit-learn target: an unfitted clone with the same
    hyper-parameters, its ``random_state`` (if any) set from the seed."""
    from sklearn.base import clone

    def train(x: np.ndarray, y: np.ndarray, seed: int) -> Any:
        model = clone(estimator)
        if "random_state" in model.get_params():
            model.set_params(random_state=seed % (2**32))
        return model.fit(x.reshape(len(x), -1), y)

    return Recipe(train, estimator_record(estimator))


def torch_recipe(
    model: ModelConfig | Callable[[], Any],
    train: TrainConfig,
    num_classes: int,
    device: str = "cpu",
) -> Recipe:
    """Reference recipe for PyTorch: build a fresh network (a mialens ``ModelConfig`` or a
    zero-argument constructor) and train it with mialens' trainer and ``train``."""
    from torch import nn

    def train_fn(x: np.ndarray, y: np.ndarray, seed: int) -> nn.Module:
        if isinstance(model, ModelConfig):

            def build() -> nn.Module:
                return build_model(model, x.shape[1:], num_classes, train.dropout)
        else:
            build = model
        result = train_model(build, x, y, train, seed, device=device)
        net = build()
        net.load_state_dict(result.state_dict)
        return net.to(device)

    if isinstance(model, ModelConfig):
        architecture = model.model_dump(mode="json")
    else:
        architecture = (
            f"{getattr(model, '__module__', '?')}:{getattr(model, '__qualname__', model)}"
        )
    return Recipe(train_fn, {"model": architecture, **train_recipe(train)})


def _as_pair(
    data: tuple[Any, Any] | None, name: str, num_classes: int, features: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(x, y)`` validated, with samples of shape ``features`` like the audited ones."""
    if data is None:
        return None
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise DataError(f"{name} must be a pair (x, y)")
    x = check_features(data[0], f"{name} x")
    if x.shape[1:] != features:
        raise DataError(
            f"{name} x has samples of shape {x.shape[1:]}, but x has samples of shape "
            f"{features}; {name} samples need the same features as the audited ones"
        )
    return x, check_labels(data[1], num_classes, f"{name} y", n=len(x))


@dataclass(frozen=True)
class _Measurement:
    """How the leakage is measured (TPR at the ``fpr`` levels, ``bootstrap`` replicates,
    ``seed``) and the folder ``out`` the result is written into, if any."""

    fpr: list[float]
    bootstrap: int
    seed: int
    out: str | os.PathLike | None

    @classmethod
    def check(
        cls, fpr: Sequence[float], bootstrap: int, seed: int, out: str | os.PathLike | None
    ) -> _Measurement:
        """Refuses, before any work, bad levels and an output folder that cannot be
        created or written."""
        levels = check_fpr_levels(fpr)
        if out is not None:
            writable_folder(out, "out=")
        return cls(levels, bootstrap, seed, out)


@dataclass(frozen=True)
class _Candidates:
    """The audited samples, validated: their labels, membership in the target, the class
    count and the sample ids."""

    labels: np.ndarray
    member: np.ndarray
    num_classes: int
    ids: np.ndarray

    @classmethod
    def check(cls, y: Any, members: Any, num_classes: int | None, sample_ids: Any) -> _Candidates:
        y_arr = np.asarray(y)
        if num_classes is None and y_arr.size and y_arr.dtype.kind in "iu":
            num_classes = int(y_arr.max()) + 1
        y_arr = check_labels(y_arr, num_classes, "y")
        check_multiclass(y_arr)
        n = len(y_arr)
        member = check_member_mask(members, (n,), "members")
        if member.all() or not member.any():
            raise DataError("members must mark some samples as members and some as non-members")
        ids = check_ids(sample_ids if sample_ids is not None else np.arange(n), n, "sample_ids")
        return cls(y_arr, member, int(num_classes), ids)


@dataclass(frozen=True)
class _ModelData:
    """What :func:`audit_model` queries, validated before any training: the candidates
    with their features ``x``, and the optional ``population`` and ``test`` pairs."""

    candidates: _Candidates
    x: np.ndarray
    population: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray] | None

    @classmethod
    def check(
        cls,
        x: Any,
        candidates: _Candidates,
        population: tuple[Any, Any] | None,
        test: tuple[Any, Any] | None,
    ) -> _ModelData:
        x_arr = check_features(x, "x")
        if len(x_arr) != len(candidates.labels):
            raise DataError(f"x has {len(x_arr)} samples but y has {len(candidates.labels)}")
        features, num_classes = x_arr.shape[1:], candidates.num_classes
        return cls(
            candidates,
            x_arr,
            _as_pair(population, "population", num_classes, features),
            _as_pair(test, "test", num_classes, features),
        )

    def query_data(self, recipe: TrainFn, output: OutputKind, seed: int) -> QueryData:
        """The samples as query attacks hold them; they train models with ``recipe``."""
        num_classes, pop = self.candidates.num_classes, self.population
        return QueryData(
            x=self.x,
            labels=self.candidates.labels,
            population_x=None if pop is None else pop[0],
            population_labels=None if pop is None else pop[1],
            train_model=lambda xs, ys, s: as_target(recipe(xs, ys, s), num_classes, output),
            seed=seed,
        )


def _attacks(attacks: Sequence[str | dict | Attack] | None) -> list[Attack]:
    return [a if isinstance(a, Attack) else build_attack(a) for a in (attacks or DEFAULT_ATTACKS)]


def _select_attacks(
    attacks: list[Attack], listed: bool, has_population: bool, samples_without_in: int = 0
) -> tuple[list[Attack], dict[str, str]]:
    """The attacks to run, and those skipped with the reason (``name -> reason``).

    An attack the data cannot serve is refused when the user ``listed`` it, and skipped
    with a logged warning when it came from the default list.
    """
    runnable, skipped = [], {}
    for attack in attacks:
        if attack.needs.population and not has_population:
            reason = (
                "needs population data (samples that trained neither the target nor the "
                "references), and none was given"
            )
            remedy = "give population data or drop the attack"
        elif attack.needs.references == "online" and samples_without_in:
            reason = (
                "is online and needs every sample to be a member of at least one reference "
                f"model, and {samples_without_in} samples are members of none"
            )
            remedy = "add reference models trained on them or drop the attack"
        else:
            runnable.append(attack)
            continue
        if listed:
            raise DataError(f"attack {attack.name!r} {reason}; {remedy}")
        skipped[attack.name] = reason
    for reason in dict.fromkeys(skipped.values()):
        names = [name for name, why in skipped.items() if why == reason]
        log.warning("skipped attacks %s: each %s", ", ".join(names), reason)
    return runnable, skipped


def _reference_coverage(ref_member: np.ndarray, attacks: Sequence[Attack]) -> int:
    """Refuse memberships that leave a sample with no OUT reference (when an attack uses
    references); return how many samples have no IN reference."""
    users = [a.name for a in attacks if a.needs.references != "none"]
    if users and not len(ref_member):
        raise DataError(
            f"reference_logits holds no reference model, which {', '.join(users)} need; "
            "pass reference outputs or attacks that use none (e.g. attacks=['loss'])"
        )
    no_out = int(ref_member.all(axis=0).sum())
    if users and no_out:
        raise DataError(
            f"reference_members: {no_out} of {ref_member.shape[1]} samples are members of "
            "every reference model; every sample needs at least one reference model it did "
            "not train (an OUT reference). Add reference models or drop those samples"
        )
    return int((~ref_member).all(axis=0).sum())


@fixed_threads()  # the recipe trains and the attacks query models
def audit_model(
    target: Any,
    x: Any,
    y: Any,
    members: Any,
    *,
    num_classes: int | None = None,
    sample_ids: Any = None,
    population: tuple[Any, Any] | None = None,
    test: tuple[Any, Any] | None = None,
    train_reference: TrainFn | None = None,
    target_recipe: TrainConfig | Mapping[str, Any] | None = None,
    num_references: int = 16,
    attacks: Sequence[str | dict | Attack] | None = None,
    queries: QueryConfig | None = None,
    fpr: Sequence[float] = DEFAULT_FPR,
    bootstrap: int = 200,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    output: OutputKind = "auto",
    progress: bool | ProgressHook = False,
) -> AuditResult:
    """Attack a trained ``target`` on the candidate samples ``(x, y)`` and measure leakage.

    ``members[n]`` says whether sample ``n`` trained the target (the ground truth the
    metrics need). ``population=(x_pop, y_pop)``, samples that trained no model, is
    needed by Attack-P and RMIA; ``test=(x_test, y_test)`` gives the utility (default:
    the target's accuracy on the non-members). ``num_references`` reference models are
    trained on complementary halves of ``(x, y)`` with ``train_reference(x, y, seed)``,
    by default :func:`sklearn_recipe` for a scikit-learn target (for PyTorch:
    :func:`torch_recipe`); ``design["fidelity"]`` records ``target_recipe`` (a
    ``TrainConfig`` or a mapping; a scikit-learn target's class and parameters by
    default) beside it, with the accuracy gaps (see :mod:`mialens.audit.fidelity`).
    Image inputs ``(n, c, h, w)`` are queried under the augmentations of ``queries``.
    Without population data the default attacks that need it are skipped, with a logged
    warning and the reason in :attr:`AuditResult.skipped`; listed in ``attacks``, they are
    refused. ``output`` says whether a callable or PyTorch target (and the references)
    answers logits or probabilities, possibly rounded; ``"auto"`` decides from the values
    (see :mod:`mialens.targets.adapters`). ``fpr``: the false-positive rates at which the
    TPR is reported, strictly between 0 and 1. ``out``: a folder to write metrics.json,
    samples.csv and report.html into (created if needed); nothing is written without it.
    ``progress`` shows the reference training and the attacks as in
    :func:`~mialens.workflows.audit.run_audit`.
    """
    measure = _Measurement.check(fpr, bootstrap, seed, out)
    candidates = _Candidates.check(y, members, num_classes, sample_ids)
    data = _ModelData.check(x, candidates, population, test)
    keep = _reference_halves(num_references, len(data.x), seed)
    recipe = _default_recipe(target, train_reference)
    target_record = _target_record(target, target_recipe)
    chosen, skipped = _select_attacks(_attacks(attacks), bool(attacks), data.population is not None)
    with progress_hook(progress) as hook:
        models = _trained_models(target, recipe, data, keep, seed, output, hook)
        outputs = _queried_outputs(models, data, keep, queries)
        on_step = step_counter(hook, "attacks", len(chosen))
        query = data.query_data(recipe, output, seed)
        scored = score_targets(chosen, outputs, [0], models, query, on_step=on_step)
    records = (target_record, _reference_record(recipe, data))
    return _finish_model(models, outputs, scored, data, (chosen, skipped), measure, records)


def _reference_halves(num_references: int, n: int, seed: int) -> np.ndarray:
    """The references' membership ``(num_references, n)``: complementary halves."""
    if num_references < 2 or num_references % 2:
        raise ConfigError(f"num_references must be even and at least 2; got {num_references}")
    return keep_mask(num_references, n, seed)


def _finish_model(
    models: list[Target],
    outputs: ModelOutputs,
    scored: Scores,
    data: _ModelData,
    attacks: tuple[list[Attack], dict[str, str]],
    measure: _Measurement,
    recipes: tuple[dict[str, Any] | None, dict[str, Any]],
) -> AuditResult:
    """:func:`_finish` for :func:`audit_model`: the models' test accuracies and fidelity."""
    test_acc = _test_accuracies(models, outputs, data.test)
    fidelity = _fidelity(outputs, test_acc, recipes)
    target_test = None if data.test is None else test_acc[0]
    ids = data.candidates.ids
    return _finish(outputs, scored, ids, *attacks, target_test, measure, fidelity)


def _test_accuracies(
    models: list[Target], outputs: ModelOutputs, test: tuple[np.ndarray, np.ndarray] | None
) -> list[float]:
    """Every model's test accuracy: on the test set if given, else on its non-members."""
    if test is not None:
        return [accuracy(m.logits(test[0]), test[1]) for m in models]
    logits, labels = outputs.logits[:, :, 0], outputs.labels
    return [accuracy(lg[~m], labels[~m]) for lg, m in zip(logits, outputs.member, strict=True)]


def _fidelity(
    outputs: ModelOutputs,
    test_accuracy: list[float],
    recipes: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None] = (None, None),
) -> dict[str, Any]:
    """The fidelity record of the target (model 0) and its references; its warnings are
    logged."""
    logits, labels = outputs.logits[:, :, 0], outputs.labels
    train = [accuracy(lg[m], labels[m]) for lg, m in zip(logits, outputs.member, strict=True)]
    fidelity = reference_fidelity(
        (train[0], test_accuracy[0]), (train[1:], test_accuracy[1:]), *recipes
    )
    for warning in fidelity["warnings"]:
        log.warning("reference fidelity: %s", warning)
    return fidelity


def _target_record(target: Any, given: TrainConfig | Mapping[str, Any] | None) -> dict | None:
    """The target's recipe as given (a TrainConfig as its record); for a scikit-learn
    target without one, its class and parameters."""
    if isinstance(given, TrainConfig):
        return train_recipe(given)
    if given is not None:
        if not isinstance(given, Mapping):
            raise ConfigError(
                f"target_recipe must be a TrainConfig or a mapping; got {type(given).__name__}"
            )
        return dict(given)
    if hasattr(target, "predict_proba") and hasattr(target, "get_params"):
        return estimator_record(target)
    return None


def _reference_record(recipe: TrainFn, data: _ModelData) -> dict[str, Any]:
    """The references' recipe record (a :class:`Recipe`'s, else the function's name) and
    the sha256 of the samples whose halves they train on."""
    record = getattr(recipe, "record", None)
    if record is None:
        name = getattr(recipe, "__qualname__", type(recipe).__name__)
        record = {"function": f"{getattr(recipe, '__module__', '?')}:{name}"}
    return {**record, "data_sha256": data_sha256(data.x, data.candidates.labels)}


def _trained_models(
    target: Any,
    recipe: TrainFn,
    data: _ModelData,
    keep: np.ndarray,
    seed: int,
    output: OutputKind,
    hook: ProgressHook | None,
) -> list[Target]:
    """The target (model 0) and the reference models ``recipe`` trains on the candidates
    ``keep[r]`` marks, all as queryable targets."""
    num_classes, labels = data.candidates.num_classes, data.candidates.labels
    models = [as_target(target, num_classes, output)]
    num_references = len(keep)
    for r in range(num_references):
        log.info("training reference model %d/%d", r + 1, num_references)
        trained = recipe(data.x[keep[r]], labels[keep[r]], int_seed(seed, "reference", r))
        models.append(as_target(trained, num_classes, output))
        if hook is not None:
            hook("models", r + 1, num_references, f"{r + 1}/{num_references} models")
    return models


def _queried_outputs(
    models: list[Target], data: _ModelData, keep: np.ndarray, queries: QueryConfig | None
) -> ModelOutputs:
    """Every model's logits on the candidates (and the population) under the query views."""
    transforms = transforms_for(
        queries or QueryConfig(), "image" if data.x.ndim == 4 else "tabular"
    )
    pop = data.population
    return ModelOutputs(
        logits=np.stack([collect_logits(m, data.x, transforms) for m in models]),
        member=np.vstack([data.candidates.member[None], keep]),
        labels=data.candidates.labels,
        population_logits=None
        if pop is None
        else np.stack([collect_logits(m, pop[0], transforms) for m in models]),
        population_labels=None if pop is None else pop[1],
    )


def audit_logits(
    target_logits: Any,
    y: Any,
    members: Any,
    reference_logits: Any,
    reference_members: Any,
    *,
    num_classes: int | None = None,
    sample_ids: Any = None,
    population_logits: Any = None,
    reference_population_logits: Any = None,
    population_labels: Any = None,
    attacks: Sequence[str | dict | Attack] | None = None,
    fpr: Sequence[float] = DEFAULT_FPR,
    bootstrap: int = 200,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    output: OutputKind = "auto",
) -> AuditResult:
    """Audit from precomputed outputs: the target's logits ``(N, [Q,] C)`` with its
    ``members (N,)``, and ``R`` reference models' logits ``(R, N, [Q,] C)`` with their
    ``reference_members (R, N)``. Population logits (target ``(Z, [Q,] C)``, references
    ``(R, Z, [Q,] C)``) and labels are needed by Attack-P and RMIA.

    The references' memberships need not be complementary (independent inclusions, as
    DP auditing draws them, are fine), but every sample needs at least one reference it
    did not train; online attacks also need one it trained, and are skipped otherwise
    (refused when listed in ``attacks``). Without population data, the default attacks
    that need it are skipped (see :attr:`AuditResult.skipped`). ``output`` says whether
    the arrays are logits or probabilities (possibly rounded); ``"auto"`` decides from
    the values (see :mod:`mialens.targets.adapters`). ``out``: a folder to write
    metrics.json, samples.csv and report.html into (created if needed)."""
    measure = _Measurement.check(fpr, bootstrap, seed, out)
    tgt = check_logits(target_logits, "target_logits", num_classes=num_classes)
    cand = _Candidates.check(y, members, num_classes or tgt.shape[-1], sample_ids)
    n = len(cand.labels)
    tgt = check_logits(tgt, "target_logits", n=n, num_classes=cand.num_classes)
    refs = _stacked_logits(reference_logits, "reference_logits", tgt.shape)
    ref_member = check_member_mask(reference_members, (refs.shape[0], n), "reference_members")
    pop = (population_logits, reference_population_logits, population_labels)
    if any(v is not None for v in pop) and any(v is None for v in pop):
        raise ConfigError(
            "population data needs population_logits, reference_population_logits and "
            "population_labels together"
        )
    has_population = population_logits is not None
    chosen = _attacks(attacks)
    without_in = _reference_coverage(ref_member, chosen)
    chosen, skipped = _select_attacks(chosen, bool(attacks), has_population, without_in)
    arrays = {"target_logits": tgt, "reference_logits": refs}
    if has_population:
        arrays |= _population_logits(
            population_logits, reference_population_logits, tgt.shape, cand.num_classes, len(refs)
        )
    outputs = _stacked_outputs(read_outputs(arrays, output), cand, ref_member, population_labels)
    scored = score_targets(chosen, outputs, [0])
    fidelity = _fidelity(outputs, _test_accuracies([], outputs, None))
    return _finish(outputs, scored, cand.ids, chosen, skipped, None, measure, fidelity)


def _population_logits(
    target: Any, references: Any, shape: tuple[int, ...], num_classes: int, num_models: int
) -> dict[str, np.ndarray]:
    """The population logits of the target ``(Z, *shape[1:])`` and of the ``num_models``
    references, checked like the target's logits of ``shape``."""
    pop_t = check_logits(target, "population_logits", num_classes=num_classes)
    if pop_t.shape[1:] != shape[1:]:
        raise DataError(
            f"population_logits must have shape (Z, {', '.join(map(str, shape[1:]))}) "
            f"like target_logits; got {pop_t.shape}"
        )
    pop_refs = _stacked_logits(
        references, "reference_population_logits", pop_t.shape, num_models=num_models
    )
    return {"population_logits": pop_t, "reference_population_logits": pop_refs}


def _stacked_outputs(
    arrays: dict[str, np.ndarray], cand: _Candidates, ref_member: np.ndarray, pop_labels: Any
) -> ModelOutputs:
    """The target (model 0) stacked on the references, and their population logits."""
    pop = None
    if "population_logits" in arrays:
        pop = np.concatenate(
            [arrays["population_logits"][None], arrays["reference_population_logits"]]
        )
    return ModelOutputs(
        logits=np.concatenate([arrays["target_logits"][None], arrays["reference_logits"]]),
        member=np.vstack([cand.member[None], ref_member]),
        labels=cand.labels,
        population_logits=pop,
        population_labels=None if pop is None else pop_labels,
    )


def _stacked_logits(
    values: Any, name: str, shape: tuple[int, ...], num_models: int | None = None
) -> np.ndarray:
    """``values`` as float32 logits of shape ``(R, *shape)`` (``R == num_models`` if given)."""
    wanted = ("R" if num_models is None else str(num_models), *map(str, shape))
    try:
        arr = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{name} must be a numeric array of shape ({', '.join(wanted)}): {exc}"
        ) from exc
    if arr.shape[1:] != shape or (num_models is not None and arr.shape[0] != num_models):
        raise DataError(f"{name} must have shape ({', '.join(wanted)}); got {arr.shape}")
    return arr


def _finish(
    outputs: ModelOutputs,
    scored: Scores,
    ids: np.ndarray,
    attacks: list[Attack],
    skipped: dict[str, str],
    test_accuracy: float | None,
    measure: _Measurement,
    fidelity: dict[str, Any],
) -> AuditResult:
    """Assemble the result of the target (model 0) scored against the references (the
    ``skipped`` attacks with their reasons), measure it and write it if asked."""
    fpr, bootstrap, seed = measure.fpr, measure.bootstrap, measure.seed
    member = outputs.member[0]
    n_queries = outputs.logits.shape[2]
    result = AuditResult(
        sample_ids=ids,
        labels=outputs.labels,
        members=member[None],
        target_models=[0],
        scores=scored.scores,
        attacks={
            a.name: attack_info(a, scored.queries_per_sample[a.name], scored.extras.get(a.name))
            for a in attacks
        },
        fpr_levels=sorted({float(v) for v in fpr}, reverse=True),
        design={
            "dataset": "user data",
            "num_models": outputs.num_models,
            "targets": 1,
            "pool_size": len(ids),
            "population_size": 0
            if outputs.population_logits is None
            else int(outputs.population_logits.shape[1]),
            "queries_per_sample": n_queries,
            "seed": seed,
            "fidelity": fidelity,
        },
        config={"num_references": outputs.num_models - 1, "seed": seed, "bootstrap": bootstrap},
        skipped=skipped,
    )
    target_logits = outputs.logits[0, :, 0]
    labels = outputs.labels
    train_acc = accuracy(target_logits[member], labels[member])
    if test_accuracy is None:
        test_accuracy, source = accuracy(target_logits[~member], labels[~member]), "non-members"
    else:
        source = "test set"
    result.set_utility([train_acc], [test_accuracy], source)
    result.compute_metrics(bootstrap, seed)
    if measure.out is not None:
        write_outputs(result, measure.out)
    return result


def _default_recipe(target: Any, train_reference: TrainFn | None) -> TrainFn:
    if train_reference is not None:
        return train_reference
    if hasattr(target, "predict_proba") and hasattr(target, "get_params"):
        return sklearn_recipe(target)
    raise ConfigError(
        "reference models need the target's training recipe: pass train_reference=(x, y, seed) "
        "-> model (for PyTorch, mialens.workflows.api.torch_recipe builds one), or use "
        "audit_logits with precomputed reference outputs"
    )


def dp_audit(
    config: DPAuditConfig | dict[str, Any] | str | os.PathLike,
    out: str | os.PathLike | None = None,
) -> DPAuditReport:
    """Audit a DP-SGD training with independently included canaries (``mialens dp-audit``).

    ``config``: a :class:`~mialens.workflows.config.DPAuditConfig`, the same as a mapping,
    or the path of its YAML file; validated before any training. ``out``: a folder to write
    ``dp_audit.json``, ``canaries.npz`` and ``dp_audit.html`` into. The report's
    :attr:`~mialens.workflows.dp_audit.DPAuditReport.methods` hold each method's bound (or
    estimate) with its evidence; see :mod:`mialens.workflows.dp_audit`."""
    if isinstance(config, dict):
        config = validate_config(config, DPAuditConfig)
    elif not isinstance(config, DPAuditConfig):
        config = load_config(config, model=DPAuditConfig)
    return run_dp_audit(config, out)
