"""Trajectory attacks: how a sample's loss evolves while the target is distilled.

Both attacks distil the model under attack into a fresh network of the same
architecture on auxiliary data (the audit's population samples, which trained no
model), using the model's soft outputs as targets (KL divergence, temperature 1), and
record the distilled network after every epoch. A member's loss under the distilled
networks follows a characteristic path, because the teacher memorised it. A shadow
model (a reference model, membership known) is distilled the same way, and a
classifier trained on the shadow's members' and non-members' paths is applied to the
target's.

* :class:`TrajectoryMIA` (Liu et al. 2022, CCS): the feature vector is the
  loss of ``(x, y)`` under the distilled network of each epoch followed by its loss
  under the original model; the attack model is an MLP.
* :class:`SeqMIA` (Li et al. 2024, CCS): at each epoch five metrics of the
  distilled network's output (loss, top-1 confidence, standard deviation of the
  probability vector, entropy, modified entropy), the original model's metrics last;
  the sequence is read by an LSTM with attention pooling.

Target queries: its soft outputs on the auxiliary samples (``|aux| / N`` per audited
sample), in the per-target step (``prepare``: the distillation of the target), and its
outputs on every audited sample (one each), when scoring.

Departures: losses enter the attack models as logarithms (members' losses span many
orders of magnitude near 0, which raw values squash; ``log_losses: false`` feeds raw
losses as the papers do). Attack-model training: the official TrajectoryMIA code trains
its attack MLP for a fixed number of epochs and reports the best AUC over those epochs
measured on the *target's* membership, which an adversary cannot do; we found no
stopping rule in the SeqMIA paper either. Both attack models here are trained to
convergence (:mod:`mialens.attacks.attack_models`): a seeded held-out
``attack_holdout`` (a fifth) of the shadow rows, whose membership is known, stops
training once its loss has not improved for ``attack_patience`` (20) epochs, within a
cap of ``attack_max_epochs`` (2000), and the best epoch's weights are kept. A fixed
budget under-trains the LSTM: with the former budget of 30 epochs SeqMIA's mean AUC on the
digits threat-model example (seed 0) was 0.594; trained to convergence (47-61 epochs)
it is 0.692. The epochs used are reported in ``extra()["attack_training"]``.
"""

from __future__ import annotations

import copy
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mialens.attacks.adversary_data import Standardizer, num_classes_of
from mialens.attacks.attack_models import (
    AttackModelParams,
    TrainingRecord,
    check_rows,
    fit_classifier,
    train_binary,
)
from mialens.attacks.base import Needs, QueryAttack, QueryData, QueryReferences
from mialens.attacks.networks import predict_logit, seeded, single_thread, single_threaded
from mialens.errors import DataError
from mialens.models.architectures import ModelConfig, build_model
from mialens.models.loop import minibatch_epoch
from mialens.seeding import int_seed, rng
from mialens.signals.statistics import entropy, log_probabilities, loss, modified_entropy


def distill_trajectory(
    build,
    aux_x: np.ndarray,
    teacher_logits: np.ndarray,
    eval_x: np.ndarray,
    epochs: int,
    seed: int,
    lr: float = 1e-3,
    batch_size: int = 64,
) -> np.ndarray:
    """Distil a teacher into ``build()`` on ``aux_x`` and return the student's logits on
    ``eval_x`` after each epoch: ``(epochs, len(eval_x), classes)`` float32."""
    with seeded(seed):
        student = build()
    xt = torch.as_tensor(np.asarray(aux_x, np.float32))
    soft = torch.softmax(torch.as_tensor(np.asarray(teacher_logits, np.float32)), dim=1)
    ev = torch.as_tensor(np.asarray(eval_x, np.float32))
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(int(seed) % (2**63))
    path = []
    with single_thread():
        for _ in range(epochs):
            _distill_epoch(student, xt, soft, opt, gen, batch_size)
            student.eval()
            with torch.no_grad():
                out = [student(ev[i : i + 4096]) for i in range(0, len(ev), 4096)]
            path.append(torch.cat(out).numpy())
    return np.stack(path)


def _distill_epoch(student, xt, soft, opt, gen, batch_size) -> None:
    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(student(xt[idx]), dim=1)
        return F.kl_div(logp, soft[idx], reduction="batchmean")

    student.train()
    minibatch_epoch(opt, torch.arange(len(xt)), batch_size, gen, batch_loss)


class TrajectoryParams(AttackModelParams):
    epochs: int = Field(default=20, ge=1, description="distillation epochs (trajectory length)")
    lr: float = Field(default=1e-3, gt=0, description="distillation learning rate (Adam)")
    batch_size: int = Field(default=64, ge=1)
    shadows: int = Field(default=1, ge=1, description="reference models distilled as shadows")
    log_losses: bool = True


class _TrajectoryBase(QueryAttack):
    """Shared by both attacks: ``fit`` distils shadow (reference) models and trains the
    attack model on their paths; the per-target step (:meth:`prepare`) distils the
    target (its logits on the population, one query per population sample) and keeps
    the distilled networks' logits on the candidates; :meth:`score` appends the target's
    own logits on them (one query per sample) and applies the attack model."""

    threat_model = "score"
    needs = Needs("queries", references="offline", population=True, target_step=True)
    Params = TrajectoryParams

    @staticmethod
    def _builder(data: QueryData, model, num_classes: int):
        """Fresh networks of the audited architecture: the audit's constructor, else a
        re-initialised copy of a reference model, else mialens' default MLP."""
        if data.build_model is not None:
            return data.build_model
        module = getattr(model, "module", None)
        if isinstance(module, nn.Module):

            def clone_fresh() -> nn.Module:
                net = copy.deepcopy(module).cpu()  # students are distilled on the CPU
                for m in net.modules():
                    if hasattr(m, "reset_parameters"):
                        m.reset_parameters()
                return net

            return clone_fresh
        shape = data.x.shape[1:]
        return lambda: build_model(ModelConfig(), shape, num_classes)

    def _path(self, model, data: QueryData) -> np.ndarray:
        """Distilled logits ``(E, N, C)`` followed by the model's own ``(1, N, C)``."""
        return np.concatenate([self._distilled(model, data), model.logits(data.x)[None]])

    def _distilled(self, model, data: QueryData) -> np.ndarray:
        """Logits ``(E, N, C)`` of ``model`` distilled after each epoch, on ``data.x``."""
        p = self.params
        teacher = model.logits(data.population_x)
        return distill_trajectory(
            self.builder_,
            data.population_x,
            teacher,
            data.x,
            p.epochs,
            int_seed(data.seed, "trajectory-student"),
            p.lr,
            p.batch_size,
        )

    def _features(self, path: np.ndarray, labels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _train(self, x: np.ndarray, member: np.ndarray, seed: int) -> TrainingRecord:
        raise NotImplementedError

    @single_threaded
    def _fit(self, refs: QueryReferences | None) -> None:
        assert refs is not None
        data = refs.data
        if data.population_x is None or len(data.population_x) < 2:
            raise DataError(f"attack {self.name!r} distils on population samples; none given")
        self.num_classes_ = num_classes_of(refs.models[0], data.labels)
        self.builder_ = self._builder(data, refs.models[0], self.num_classes_)
        count = min(self.params.shadows, len(refs.models))
        check_rows(count * len(data.x), self.params.attack_holdout)
        chosen = rng(data.seed, "trajectory-shadows").choice(len(refs.models), count, replace=False)
        feats, member = [], []
        for r in chosen:
            feats.append(self._features(self._path(refs.models[r], data), data.labels))
            member.append(np.asarray(refs.member[r], bool))
        self.training_ = self._train(np.concatenate(feats), np.concatenate(member), data.seed)

    @single_threaded
    def _prepare(self, target, data: QueryData) -> None:
        self.distilled_ = self._distilled(target, data)

    @single_threaded
    def _score(self, target, data: QueryData) -> np.ndarray:
        path = np.concatenate([self.distilled_, target.logits(data.x)[None]])
        return self._decide(self._features(path, data.labels))

    def extra(self) -> dict:
        return {"attack_training": self.training_.as_extra()}

    def _loss_path(self, path: np.ndarray, labels: np.ndarray) -> np.ndarray:
        values = loss(path, labels[None])  # (T, N)
        return np.log(np.maximum(values, 1e-30)) if self.params.log_losses else values


class TrajectoryMIA(_TrajectoryBase):
    """Liu et al.'s loss-trajectory attack (see the module docstring)."""

    name = "trajectory"
    summary = (
        "TrajectoryMIA (Liu et al.): losses along the distillation of the target, "
        "classified by an MLP trained on a distilled shadow's trajectories (score)"
    )
    paper = "Liu et al. 2022, Membership Inference Attacks by Exploiting Loss Trajectory (CCS)"

    def _features(self, path: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return self._loss_path(path, labels).T  # (N, E + 1)

    def _train(self, x: np.ndarray, member: np.ndarray, seed: int) -> TrainingRecord:
        self.model_ = fit_classifier(
            x, member, "mlp", int_seed(seed, "trajectory-attack"), self.params, hidden=(128, 32)
        )
        return self.model_.training

    def _decide(self, x: np.ndarray) -> np.ndarray:
        return self.model_.decision(x)


class AttentionLSTM(nn.Module):
    """LSTM over the metric sequence, attention pooling of its states, then a logit."""

    def __init__(self, features: int, hidden: int = 32) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.attention = nn.Linear(hidden, 1)
        self.head = nn.Sequential(nn.Linear(hidden, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(seq)
        weights = torch.softmax(self.attention(states).squeeze(-1), dim=1)
        context = (weights[..., None] * states).sum(dim=1)
        return self.head(context).squeeze(-1)


class SeqMIAParams(TrajectoryParams):
    hidden: int = Field(default=32, ge=1, description="LSTM width")
    metrics: list[Literal["loss", "confidence", "std", "entropy", "mentr"]] = Field(
        default=["loss", "confidence", "std", "entropy", "mentr"]
    )


class SeqMIA(_TrajectoryBase):
    """Li et al.'s sequential-metric attack (see the module docstring)."""

    name = "seqmia"
    summary = (
        "SeqMIA (Li et al.): five metrics per distillation epoch read by an attention "
        "LSTM trained on a distilled shadow (score)"
    )
    paper = "Li et al. 2024, SeqMIA: Sequential-Metric Based Membership Inference Attack (CCS)"
    Params = SeqMIAParams

    def _features(self, path: np.ndarray, labels: np.ndarray) -> np.ndarray:
        probs = np.exp(log_probabilities(path))
        lab = labels[None]
        table = {
            "loss": lambda: self._loss_path(path, labels),
            "confidence": lambda: probs.max(axis=-1),
            "std": lambda: probs.std(axis=-1),
            "entropy": lambda: entropy(path),
            "mentr": lambda: modified_entropy(path, lab),
        }
        seq = np.stack([table[m]() for m in self.params.metrics], axis=-1)  # (T, N, M)
        return seq.transpose(1, 0, 2)  # (N, T, M)

    def _train(self, seq: np.ndarray, member: np.ndarray, seed: int) -> TrainingRecord:
        n, t, m = seq.shape
        self.scale_ = Standardizer.fit(seq.reshape(-1, m))
        x = torch.as_tensor(self.scale_(seq.reshape(-1, m)).reshape(n, t, m))
        with seeded(int_seed(seed, "seqmia-init")):
            self.net_ = AttentionLSTM(m, self.params.hidden)
        p = self.params
        return train_binary(
            self.net_,
            (x,),
            member,
            int_seed(seed, "seqmia-train"),
            p.attack_max_epochs,
            p.attack_patience,
            p.attack_holdout,
        )

    def _decide(self, seq: np.ndarray) -> np.ndarray:
        n, t, m = seq.shape
        x = torch.as_tensor(self.scale_(seq.reshape(-1, m)).reshape(n, t, m))
        return predict_logit(self.net_, (x,))
