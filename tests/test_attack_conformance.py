"""Every registered attack and output defence honours the contract (attacks.base):
validated parameters, unfitted clones, a declaration that matches the methods, a score
without side effects, finite float64 scores, determinism under a seed, and the threat
model's adapter. Tiny data: 40 samples, 4 features, 3 classes, 4 small models."""

from __future__ import annotations

import copy
import functools
import inspect
import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from pydantic import BaseModel
from typer.testing import CliRunner

from mialens.attacks.base import (
    Attack,
    Needs,
    QueryAttack,
    QueryData,
    QueryReferences,
    ReferenceSignals,
    SignalAttack,
    TargetSignals,
)
from mialens.attacks.registry import ATTACKS, build_attack
from mialens.audit.engine import ModelOutputs, score_targets
from mialens.cli import app
from mialens.defenses.apply import DefendedTarget
from mialens.defenses.output import OUTPUT_DEFENSES, DefenderData, build_output_defense
from mialens.errors import ConfigError
from mialens.models.architectures import ModelConfig, build_model
from mialens.models.training import TrainConfig, train_model
from mialens.signals.statistics import SignalSpec, compute_signal
from mialens.splits import keep_mask
from mialens.targets.adapters import Target, TorchTarget, restrict
from mialens.workflows.api import audit_model
from mialens.workflows.config import validate_config

N, D, C, M = 40, 4, 3, 4
FAST = {
    "augmentation": {"num_noise": 4},
    "boundary": {"max_queries": 60, "calibration_samples": 10},
    "yoqo": {"steps": 5},
    "quantile": {"epochs": 3},
    "shokri": {"attack_max_epochs": 5},
    "ml_leaks": {"shadows": 2, "attack_max_epochs": 5},
    "ml_leaks_transfer": {"shadow_size": 60, "attack_max_epochs": 5},
    "nasr": {"attack_max_epochs": 5, "max_rows": 100},
    "trajectory": {"epochs": 2, "shadows": 2, "attack_max_epochs": 5},
    "seqmia": {"epochs": 2, "shadows": 2, "attack_max_epochs": 5},
}
"""Cheaper parameters (fewer epochs, queries and probes) for the slower attacks; the
shadow counts give the attack models the 50 rows their held-out stopping needs."""


@dataclass
class Tiny:
    models: list[TorchTarget]
    member: np.ndarray
    data: QueryData
    outputs: ModelOutputs


@functools.cache
def tiny() -> Tiny:
    g = np.random.default_rng(0)
    centers = g.normal(0, 1.5, (C, D))

    def draw(n):
        y = g.integers(C, size=n)
        return (centers[y] + g.normal(0, 1, (n, D))).astype(np.float32), y

    x, y = draw(N)
    pop_x, pop_y = draw(30)

    def build():
        return build_model(ModelConfig(arch="mlp", hidden=[8]), (D,), C)

    def train(xs, ys, seed):
        net = build()
        net.load_state_dict(train_model(build, xs, ys, TrainConfig(epochs=3), seed).state_dict)
        return TorchTarget(net.eval(), C)

    member = keep_mask(M, N, seed=0)  # every sample trains two of the four models
    models = [train(x[member[k]], y[member[k]], k) for k in range(M)]
    outputs = ModelOutputs(
        logits=np.stack([m.logits(x) for m in models]),
        member=member,
        labels=y,
        population_logits=np.stack([m.logits(pop_x) for m in models]),
        population_labels=pop_y,
    )
    return Tiny(models, member, QueryData(x, y, pop_x, pop_y, train, build, seed=3), outputs)


def make(name: str) -> Attack:
    return build_attack({"name": name, **FAST.get(name, {})})


def signal_inputs(attack: SignalAttack, setup: Tiny) -> tuple[ReferenceSignals, TargetSignals]:
    """Target model 0 and references 1..3, the signal computed as the audit does."""
    spec, out = attack.signal(), setup.outputs
    values = compute_signal(spec.name, out.logits, out.labels[None, :, None], **spec.kwargs)
    pop = compute_signal(
        spec.name, out.population_logits, out.population_labels[None, :, None], **spec.kwargs
    )
    refs = ReferenceSignals(values[1:], out.member[1:], out.labels, pop[1:], out.population_labels)
    return refs, TargetSignals(values[0], out.labels, pop[0], out.population_labels)


def fitted_and_scorer(attack: Attack, setup: Tiny, target: Target | None = None):
    """The attack fitted (and prepared) for target model 0, and a call scoring it."""
    needs = attack.needs
    if needs.input == "signals":
        refs, signals = signal_inputs(attack, setup)
        attack.fit(refs if needs.references != "none" else None)
        return attack, lambda: attack.score(signals)
    refs = None
    if needs.references != "none":
        refs = QueryReferences(setup.models[1:], setup.member[1:], setup.data)
    attack.fit(refs)
    view = restrict(target or setup.models[0], attack.threat_model)
    if needs.target_step:
        attack.prepare(view, setup.data)
    return attack, lambda: attack.score(view, setup.data)


def same(a, b) -> bool:
    """Deep equality of attack state: arrays, tensors, modules, containers, objects."""
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
        )
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, torch.nn.Module):
        return a.training == b.training and same(a.state_dict(), b.state_dict())
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, BaseModel) or inspect.isroutine(a) or isinstance(a, type):
        return a == b
    if hasattr(a, "__dict__"):
        return type(a) is type(b) and same(vars(a), vars(b))
    return a == b


NAMES = sorted(ATTACKS)


def test_fast_parameters_name_registered_attacks():
    assert set(FAST) <= set(ATTACKS)


@pytest.mark.parametrize("name", NAMES)
def test_parameters_are_validated_and_clones_are_unfitted(name):
    cls = ATTACKS[name]
    assert cls.name == name
    with pytest.raises(ConfigError, match=name):
        cls(no_such_parameter=1)
    attack = make(name)
    clone = attack.clone()
    assert type(clone) is cls and clone.params == attack.params and clone.needs == attack.needs
    assert not clone.fitted_
    fitted, _ = fitted_and_scorer(attack, tiny())
    assert not fitted.clone().fitted_


@pytest.mark.parametrize("name", NAMES)
def test_the_declaration_matches_the_methods(name):
    cls = ATTACKS[name]
    needs = make(name).needs
    assert needs == cls.needs_for(make(name).params)
    assert (needs.input == "signals") == issubclass(cls, SignalAttack)
    assert (needs.input == "queries") == issubclass(cls, QueryAttack)
    if issubclass(cls, QueryAttack):
        assert needs.target_step == (cls._prepare is not QueryAttack._prepare)
    else:
        overrides = cls.chunk_summary is not SignalAttack.chunk_summary
        assert needs.summary_pass == overrides
        assert overrides == (cls.use_summaries is not SignalAttack.use_summaries)


@pytest.mark.parametrize("name", NAMES)
def test_score_is_pure_finite_and_deterministic(name):
    setup = tiny()
    attack, score = fitted_and_scorer(make(name), setup)
    state = copy.deepcopy(vars(attack))
    extra = copy.deepcopy(attack.extra())
    first = score()
    assert first.dtype == np.float64 and first.shape == (N,)
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(score(), first)
    assert same(vars(attack), state), "score changed the fitted state"
    assert same(attack.extra(), extra)
    _, again = fitted_and_scorer(make(name), setup)  # a fresh run, the same seed
    np.testing.assert_array_equal(again(), first)


@pytest.mark.parametrize("name", NAMES)
def test_the_engine_runs_the_same_verbs(name):
    setup = tiny()
    _, score = fitted_and_scorer(make(name), setup)
    scored = score_targets([make(name)], setup.outputs, [0], setup.models, setup.data)
    np.testing.assert_array_equal(scored.scores[name][0], score())


class Spy(Target):
    """A model that answers labels (and scores, if ``scores``) and records what it was
    asked; its parameters are out of reach."""

    def __init__(self, inner: TorchTarget, scores: bool) -> None:
        super().__init__(inner.num_classes)
        self.inner, self.scores, self.asked = inner, scores, set()

    def logits(self, x):
        assert self.scores, "a label-only attack asked for scores"
        self.asked.add("logits")
        return self.inner.logits(x)

    def labels(self, x):
        self.asked.add("labels")
        return self.inner.labels(x)

    @property
    def module(self):
        raise AssertionError("a black-box attack reached the model's parameters")


BLACK_BOX = [n for n in NAMES if ATTACKS[n].threat_model in ("label", "score")]


@pytest.mark.parametrize("name", [n for n in BLACK_BOX if ATTACKS[n].needs.input == "queries"])
def test_the_threat_model_adapter_is_respected(name):
    """Through the engine's adapter, a label-only attack works against a model that
    answers labels only, and no black-box attack reaches the parameters."""
    setup = tiny()
    attack = make(name)
    spy = Spy(setup.models[0], scores=attack.threat_model == "score")
    _, score = fitted_and_scorer(attack, setup, target=spy)
    assert np.isfinite(score()).all()
    assert spy.asked, "the attack never queried the target"


@pytest.mark.parametrize("name", sorted(OUTPUT_DEFENSES))
def test_output_defences_honour_the_contract(name):
    cls = OUTPUT_DEFENSES[name]
    with pytest.raises(ConfigError, match=name):
        cls(no_such_parameter=1)
    defense = build_output_defense(name)
    assert defense.clone().params == defense.params
    z = tiny().outputs.logits[0, :, 0]
    data = DefenderData(z, tiny().outputs.labels, z[::-1] * 0.5, z * 0.1)

    def released():
        return build_output_defense(name).fit(data).apply(z)

    fitted = build_output_defense(name).fit(data)
    assert vars(fitted.clone()).keys() == vars(defense).keys()  # a clone is unfitted
    out = released()
    assert out.dtype == np.float32 and out.shape == z.shape and np.isfinite(out).all()
    np.testing.assert_array_equal(released(), out)
    if defense.label_preserving:
        np.testing.assert_array_equal(out.argmax(axis=1), z.argmax(axis=1))


@pytest.mark.parametrize("name", sorted(OUTPUT_DEFENSES))
def test_query_attacks_run_behind_every_output_defence(name):
    setup = tiny()
    z = setup.outputs.logits[0, :, 0]
    data = DefenderData(z, setup.outputs.labels, z[::-1] * 0.5, z * 0.1)
    defended = [DefendedTarget(m, build_output_defense(name).fit(data)) for m in setup.models]
    attacks = [make("gap"), make("shokri")]
    scored = score_targets(attacks, setup.outputs, [0], defended, setup.data)
    for attack in attacks:
        assert np.isfinite(scored.scores[attack.name]).all()
        assert scored.queries_per_sample[attack.name] == 1.0


class _NewSignalAttack(SignalAttack):
    name = "new_signal_attack"
    summary = "a new signal attack: the negated loss"
    paper = "Yeom et al. 2018 (CSF), Sec. 3.2"
    needs = Needs("signals", chunking="samples")

    def signal(self) -> SignalSpec:
        return SignalSpec("loss")

    def _score(self, target: TargetSignals) -> np.ndarray:
        return -target.values[:, 0]


class _NewQueryAttack(QueryAttack):
    name = "new_query_attack"
    summary = "a new label-only attack: correctness of the target's label"
    paper = "Yeom et al. 2018 (CSF), Sec. 3.3"
    threat_model = "label"
    needs = Needs("queries")

    def _score(self, target, data: QueryData) -> np.ndarray:
        return (target.labels(data.x) == data.labels).astype(np.float64)


def test_a_new_attack_is_one_class_and_one_registry_entry(monkeypatch, tmp_path):
    """The CLI's list, the configuration's validation, the engine and the report pick
    attacks up from the registry: nothing else needs to know a new attack."""
    for cls in (_NewSignalAttack, _NewQueryAttack):
        monkeypatch.setitem(ATTACKS, cls.name, cls)
    listed = CliRunner().invoke(app, ["attacks"]).output
    assert "new_signal_attack" in listed and "new_query_attack" in listed
    config = {"dataset": {"name": "digits"}, "audit": {"attacks": ["new_query_attack"]}}
    assert validate_config(config).audit.attacks == ["new_query_attack"]
    with pytest.raises(ConfigError, match="new_query_attack"):
        validate_config({"audit": {"attacks": [{"name": "new_query_attack", "typo": 1}]}})
    setup = tiny()
    members = setup.member[0]
    audit_model(
        setup.models[0],
        setup.data.x,
        setup.data.labels,
        members,
        sample_ids=np.random.default_rng(1).permutation(500)[:N] * 3 + 7,  # shuffled, gaps
        population=(setup.data.population_x, setup.data.population_labels),
        train_reference=setup.data.train_model,
        num_references=4,
        attacks=["new_signal_attack", "new_query_attack"],
        bootstrap=0,
        out=tmp_path,
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"new_signal_attack", "new_query_attack"} <= set(metrics["attacks"])
    assert metrics["attacks"]["new_query_attack"]["threat_model"] == "label"
    report = (tmp_path / "report.html").read_text()
    assert "new_signal_attack" in report and "new_query_attack" in report


def test_an_attack_declares_its_needs_in_one_place():
    with pytest.raises(TypeError, match="needs = Needs"):

        class Legacy(SignalAttack):  # the former protocol: scattered class attributes
            references = "offline"

    with pytest.raises(ValueError, match="signal attacks"):
        Needs("queries", chunking="samples")
    with pytest.raises(ValueError, match="chunking='samples'"):
        Needs("signals", summary_pass=True)
    attack = make("boundary")
    with pytest.raises(RuntimeError, match="prepare"):
        attack.fit().score(tiny().models[0], tiny().data)
    with pytest.raises(RuntimeError, match="no per-target step"):
        make("gap").fit().prepare(tiny().models[0], tiny().data)


def test_the_declared_input_matches_the_base_class():
    with pytest.raises(TypeError, match=r"its needs\.input must be 'signals'"):

        class Confused(SignalAttack):
            needs = Needs("queries")
