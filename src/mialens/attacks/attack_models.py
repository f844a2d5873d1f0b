"""Attack models: small member/non-member classifiers, trained to convergence.

Every attack that learns membership from reference (shadow) models trains its attack
model here: :func:`fit_classifier` for feature vectors (one model, or one per class),
:func:`train_binary` for any torch network ``net(*inputs) -> logit`` (an LSTM, Nasr et
al.'s multi-input network). Torch models are trained with Adam on the binary
cross-entropy until a seeded held-out split of the reference rows stops improving
(:func:`train_until_stopped`): after each epoch the held-out loss is measured, training
stops once it has not improved for ``patience`` epochs (or at the ``max_epochs`` cap)
and the weights of the best epoch are restored. The :class:`TrainingRecord` (epochs
used, whether the cap was reached) goes into the attack's ``extra`` diagnostics.

Training runs on one thread with its own generators, so the same seed gives the same
model on any thread count. :meth:`AttackClassifier.decision` returns log-odds of
membership, so that scores stay finely ordered where probabilities would saturate.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from mialens.attacks.adversary_data import Standardizer
from mialens.attacks.base import AttackParams
from mialens.attacks.networks import mlp, predict_logit, seeded, single_thread
from mialens.errors import DataError
from mialens.models.loop import Patience, minibatch_epoch

ClassifierKind = Literal["mlp", "logistic", "gbdt", "sklearn_mlp"]
"""``mlp``: a small torch MLP (default); ``logistic``: scikit-learn logistic regression;
``gbdt``: scikit-learn histogram gradient boosting; ``sklearn_mlp``: scikit-learn's
MLPClassifier."""

MIN_HELD_OUT = 10
"""Fewest held-out rows that may decide when training stops."""


class AttackModelParams(AttackParams):
    """Parameters of an attack that trains an attack model (to convergence)."""

    attack_max_epochs: int = Field(
        default=2000, ge=1, description="attack model: most training epochs (a cap)"
    )
    attack_patience: int = Field(
        default=20,
        ge=1,
        description="attack model: stop after this many epochs without a lower held-out loss",
    )
    attack_holdout: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description="attack model: fraction of the reference rows that decides when to stop",
    )


@dataclass(frozen=True)
class TrainingRecord:
    """How an attack model's training ended.

    ``epochs``: the epoch whose weights were kept (the best held-out loss);
    ``epochs_run``: epochs trained in all; ``converged``: stopped by the patience rule
    rather than the ``max_epochs`` cap; ``holdout_loss``: the kept epoch's held-out loss.
    """

    epochs: int
    epochs_run: int
    converged: bool
    holdout_loss: float | None

    def as_extra(self) -> dict[str, Any]:
        return asdict(self)


def stable_log_odds(p: np.ndarray) -> np.ndarray:
    """``log p - log(1 - p)`` with probabilities clipped to ``[1e-15, 1 - 1e-15]``."""
    p = np.clip(np.asarray(p, np.float64), 1e-15, 1 - 1e-15)
    return np.log(p) - np.log1p(-p)


def train_until_stopped(
    net: nn.Module,
    run_epoch: Callable[[], None],
    holdout_loss: Callable[[], float],
    max_epochs: int,
    patience: int,
    min_delta: float = 1e-4,
) -> TrainingRecord:
    """Early stopping: run epochs until the held-out loss has not dropped by more than
    ``min_delta`` for ``patience`` epochs (or ``max_epochs``), then restore the best
    epoch's weights. ``run_epoch`` trains ``net`` for one epoch; ``holdout_loss``
    measures it on the held-out rows. The patience rule is the training loop's
    (:class:`mialens.models.loop.Patience`)."""
    stop = Patience(1, patience, min_delta)
    best_state = copy.deepcopy(net.state_dict())
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        net.train()
        run_epoch()
        net.eval()
        with torch.no_grad():
            value = float(holdout_loss())
        if stop.improved(0, epoch, value):
            best_state = copy.deepcopy(net.state_dict())
        elif stop.stopped(0):
            break
    net.load_state_dict(best_state)
    net.eval()
    return TrainingRecord(stop.best_epoch[0] or 0, epoch, stop.stopped(0), stop.best[0])


def _too_few_rows(n: int, fraction: float, held: int) -> DataError:
    return DataError(
        f"an attack model needs at least {MIN_HELD_OUT} held-out rows to decide when to "
        f"stop training; {n} rows with holdout {fraction} give {held}"
    )


def check_rows(n: int, fraction: float) -> None:
    """Fail early (before features are computed) when ``n`` training rows cannot hold
    out enough rows to stop on."""
    if round(n * fraction) < MIN_HELD_OUT:
        raise _too_few_rows(n, fraction, round(n * fraction))


def holdout_rows(
    n: int, fraction: float, gen: torch.Generator, strata: np.ndarray | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded ``(train, held)`` row indices, ``fraction`` of each stratum held out."""
    labels = np.zeros(n, np.int64) if strata is None else np.asarray(strata, np.int64)
    order = torch.randperm(n, generator=gen).numpy()
    held = np.zeros(n, bool)
    for s in np.unique(labels):
        rows = order[labels[order] == s]
        held[rows[: round(len(rows) * fraction)]] = True
    if held.sum() < MIN_HELD_OUT or (~held).sum() < 1:
        raise _too_few_rows(n, fraction, int(held.sum()))
    return torch.as_tensor(order[~held[order]]), torch.as_tensor(order[held[order]])


def train_binary(
    net: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    labels: np.ndarray,
    seed: int,
    max_epochs: int = 2000,
    patience: int = 20,
    holdout: float = 0.2,
    lr: float = 1e-3,
    batch_size: int | None = None,
    weight_decay: float = 1e-4,
) -> TrainingRecord:
    """Train ``net(*inputs) -> logit`` on binary labels with Adam and BCE until a
    held-out fraction of the rows stops improving (:func:`train_until_stopped`).

    The default batch size gives every epoch about 16 steps (between 16 and 256 rows),
    so that small training sets are not trained in a handful of steps.
    """
    y = torch.as_tensor(np.asarray(labels, np.float32))
    gen = torch.Generator().manual_seed(int(seed) % (2**63))
    train, held = holdout_rows(len(y), holdout, gen)
    if batch_size is None:
        batch_size = int(min(256, max(16, len(train) // 16)))
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    held_inputs = tuple(t[held] for t in inputs)

    def run_epoch() -> None:
        minibatch_epoch(
            opt, train, batch_size, gen, lambda idx: loss_fn(net(*(t[idx] for t in inputs)), y[idx])
        )

    with single_thread():
        return train_until_stopped(
            net, run_epoch, lambda: loss_fn(net(*held_inputs), y[held]), max_epochs, patience
        )


# ----------------------------------------------------------------------------- per class


class GroupedMLP(nn.Module):
    """``num_groups`` independent one-hidden-layer MLPs trained and evaluated together.

    Group ``g``'s network sees only rows of group ``g``, so training this module is
    training one model per group (Shokri et al.'s per-class attack models) with
    batched matrix products: ``(G, b, in) -> (G, b)``.
    """

    def __init__(self, num_groups: int, in_features: int, hidden: int) -> None:
        super().__init__()
        bound1, bound2 = 1 / math.sqrt(in_features), 1 / math.sqrt(hidden)
        self.w1 = nn.Parameter(
            torch.empty(num_groups, in_features, hidden).uniform_(-bound1, bound1)
        )
        self.b1 = nn.Parameter(torch.empty(num_groups, 1, hidden).uniform_(-bound1, bound1))
        self.w2 = nn.Parameter(torch.empty(num_groups, hidden, 1).uniform_(-bound2, bound2))
        self.b2 = nn.Parameter(torch.empty(num_groups, 1).uniform_(-bound2, bound2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (G, b, in)``: row ``[g, i]`` goes through group ``g``'s network."""
        h = torch.relu(torch.bmm(x, self.w1) + self.b1)
        return torch.bmm(h, self.w2).squeeze(-1) + self.b2

    @torch.no_grad()
    def logits(self, x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(x), dtype=torch.float64)
        for g in torch.unique(groups).tolist():
            rows = groups == g
            h = torch.relu(x[rows] @ self.w1[g] + self.b1[g])
            out[rows] = ((h @ self.w2[g]).squeeze(-1) + self.b2[g]).double()
        return out


def train_grouped(
    net: GroupedMLP,
    x: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    seed: int,
    max_epochs: int = 2000,
    patience: int = 20,
    holdout: float = 0.2,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
) -> TrainingRecord:
    """Train every group's network on its own rows, all groups in one batched step,
    until the held-out loss (``holdout`` of each group's rows, all groups pooled) stops
    improving (:func:`train_until_stopped`).

    Each step draws ``batch_size`` rows from every group (cycling through a fresh
    permutation of the group's training rows); an epoch has as many steps as the
    average group needs to see its rows once.
    """
    xt = torch.as_tensor(np.asarray(x, np.float32))
    yt = torch.as_tensor(np.asarray(labels, np.float32))
    groups = np.asarray(groups, np.int64)
    gen = torch.Generator().manual_seed(int(seed) % (2**63))
    train, held = holdout_rows(len(yt), holdout, gen, strata=groups)
    train_groups = groups[train.numpy()]
    members = [train.numpy()[train_groups == g] for g in range(net.w1.shape[0])]
    mask = torch.as_tensor([m.size > 0 for m in members])
    steps = max(1, math.ceil(np.mean([m.size for m in members if m.size]) / batch_size))
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    order_gen = np.random.default_rng(int(seed) % (2**63))
    held_groups = torch.as_tensor(groups[held.numpy()])

    def run_epoch() -> None:
        orders = [order_gen.permutation(m) if m.size else m for m in members]
        for s in range(steps):
            idx = np.zeros((len(members), batch_size), np.int64)
            for g, order in enumerate(orders):
                if order.size:
                    idx[g] = order[(s * batch_size + np.arange(batch_size)) % order.size]
            it = torch.as_tensor(idx)
            opt.zero_grad(set_to_none=True)
            loss_fn(net(xt[it])[mask], yt[it][mask]).backward()
            opt.step()

    def held_loss() -> torch.Tensor:
        return loss_fn(net.logits(xt[held], held_groups), yt[held].double())

    with single_thread():
        return train_until_stopped(net, run_epoch, held_loss, max_epochs, patience)


# ----------------------------------------------------------------------------- classifiers


@dataclass
class AttackClassifier:
    """A fitted member/non-member classifier; :meth:`decision` gives log-odds.

    ``training``: how the (global or per-class) model's training ended; ``fallback``
    (per-class torch models): the class-agnostic model for classes that could not have
    their own, with its own ``fallback_training``.
    """

    kind: str
    scale: Standardizer
    model: Any
    training: TrainingRecord
    group_models: dict[int, Any] = field(default_factory=dict)
    fallback: Any = None
    fallback_training: TrainingRecord | None = None
    trained_groups: np.ndarray | None = None

    def decision(self, x: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        z = self.scale(x)
        if self.kind == "mlp":
            if isinstance(self.model, GroupedMLP):
                groups = np.asarray(groups, np.int64)
                out = np.zeros(len(z))
                if self.fallback is not None:
                    out = predict_logit(self.fallback, (torch.as_tensor(z),))
                own = np.isin(groups, self.trained_groups)
                if own.any():
                    out[own] = self.model.logits(
                        torch.as_tensor(z[own]), torch.as_tensor(groups[own])
                    ).numpy()
                return out
            return predict_logit(self.model, (torch.as_tensor(z),))
        if groups is None or not self.group_models:
            return _sk_decision(self.model, z)
        out = np.empty(len(z))
        groups = np.asarray(groups)
        for g in np.unique(groups):
            rows = groups == g
            out[rows] = _sk_decision(self.group_models.get(int(g), self.model), z[rows])
        return out

    def extra(self) -> dict[str, Any]:
        """``attack_training`` diagnostics for the attack's ``extra``."""
        out = {"attack_training": self.training.as_extra()}
        if self.fallback_training is not None:
            out["attack_training_fallback"] = self.fallback_training.as_extra()
        return out


def _sk_decision(model: Any, z: np.ndarray) -> np.ndarray:
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(z), np.float64)
    return stable_log_odds(model.predict_proba(z)[:, 1])


def _sk_model(kind: str, seed: int, hidden: tuple[int, ...], stop: AttackModelParams) -> Any:
    """scikit-learn estimators with their own convergence rules: logistic regression to
    lbfgs' tolerance; gradient boosting and the MLP with early stopping on a held-out
    ``attack_holdout`` of the rows (validation loss, resp. accuracy), ``attack_patience``
    iterations without improvement and ``attack_max_epochs`` iterations at most."""
    seed32 = int(seed) % (2**32)
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=max(1000, stop.attack_max_epochs))
    common = dict(
        early_stopping=True,
        validation_fraction=stop.attack_holdout,
        n_iter_no_change=stop.attack_patience,
        max_iter=stop.attack_max_epochs,
        random_state=seed32,
    )
    if kind == "gbdt":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(**common)
    if kind == "sklearn_mlp":
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(hidden_layer_sizes=hidden, **common)
    raise ValueError(f"unknown classifier kind {kind!r}")


def _sk_record(models: list[Any], cap: int) -> TrainingRecord:
    """Iterations of fitted scikit-learn estimators (the most of any), and whether all
    stopped before their cap."""
    runs = [int(np.max(m.n_iter_)) for m in models]
    caps = [getattr(m, "max_iter", cap) for m in models]
    converged = all(r < c for r, c in zip(runs, caps, strict=True))
    return TrainingRecord(max(runs), max(runs), converged, None)


def _fit_sklearn(kind, scale, member, x, seed, hidden, groups, stop) -> AttackClassifier:
    z = scale(x)
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():  # non-convergence is reported in the record instead
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = _sk_model(kind, seed, hidden, stop).fit(z, member)
        per_group: dict[int, Any] = {}
        for g in np.unique(groups) if groups is not None else ():
            rows = np.asarray(groups) == g
            if member[rows].all() or not member[rows].any():
                continue
            per_group[int(g)] = _sk_model(kind, seed, hidden, stop).fit(z[rows], member[rows])
    record = _sk_record([model, *per_group.values()], stop.attack_max_epochs)
    return AttackClassifier(kind, scale, model, record, per_group)


def fit_classifier(
    x: np.ndarray,
    member: np.ndarray,
    kind: ClassifierKind,
    seed: int,
    stop: AttackModelParams | None = None,
    hidden: tuple[int, ...] = (64,),
    groups: np.ndarray | None = None,
    num_groups: int | None = None,
) -> AttackClassifier:
    """Fit a membership classifier on features ``x (n, f)`` and labels ``member (n,)``,
    trained to convergence under ``stop`` (its ``attack_*`` fields; default: theirs).

    With ``groups`` one classifier is fitted per group (torch: a :class:`GroupedMLP`;
    scikit-learn: one estimator per group, the global one where a group lacks members
    or non-members).
    """
    member = np.asarray(member, bool)
    if member.all() or not member.any():
        raise DataError("an attack classifier needs members and non-members to learn from")
    stop = stop or AttackModelParams()
    scale = Standardizer.fit(x)
    if kind != "mlp":
        return _fit_sklearn(kind, scale, member, x, seed, hidden, groups, stop)
    z = scale(x)
    budget = dict(
        max_epochs=stop.attack_max_epochs,
        patience=stop.attack_patience,
        holdout=stop.attack_holdout,
    )
    with seeded(seed):
        flat = _Squeeze(mlp(z.shape[1], hidden))
        if groups is None:
            record = train_binary(flat, (torch.as_tensor(z),), member, seed, **budget)
            return AttackClassifier(kind, scale, flat, record)
        groups = np.asarray(groups, np.int64)
        ok = [
            g
            for g in range(int(num_groups))
            if member[groups == g].any() and not member[groups == g].all()
        ]
        grouped = GroupedMLP(int(num_groups), z.shape[1], hidden[0])
    rows = np.isin(groups, ok)
    record = train_grouped(grouped, z[rows], member[rows], groups[rows], seed, **budget)
    fallback = fallback_record = None
    if len(ok) < int(num_groups):  # one model for the classes that cannot have their own
        fallback = flat
        fallback_record = train_binary(fallback, (torch.as_tensor(z),), member, seed, **budget)
    return AttackClassifier(
        kind,
        scale,
        grouped,
        record,
        fallback=fallback,
        fallback_training=fallback_record,
        trained_groups=np.array(ok),
    )


class _Squeeze(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)
