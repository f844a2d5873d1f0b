"""Machinery shared by the query attacks: model access, attack classifiers, torch helpers.

Nothing here is an attack. The attack classifiers (:func:`fit_classifier`) are the
"attack models" of the shadow-model literature: binary member/non-member classifiers
fitted on reference (shadow) models' outputs, optionally one per group (class), whose
:meth:`AttackClassifier.decision` returns the log-odds of membership, so that scores
stay finely ordered where probabilities would saturate at 0 or 1.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from mialens.errors import DataError

ClassifierKind = Literal["mlp", "logistic", "gbdt", "sklearn_mlp"]
"""``mlp``: a small torch MLP (default); ``logistic``: scikit-learn logistic regression;
``gbdt``: scikit-learn histogram gradient boosting; ``sklearn_mlp``: scikit-learn's
MLPClassifier."""


def module_of(model: Any, who: str) -> nn.Module:
    """The torch module behind a queryable model, or a clear error."""
    module = getattr(model, "module", None)
    if not isinstance(module, nn.Module):
        raise DataError(
            f"attack {who!r} needs PyTorch models (it computes gradients or trains networks "
            f"of the same architecture); got a {type(model).__name__}"
        )
    return module


def count_passes(target: Any, n: int) -> None:
    """Count ``n`` samples passed through a white-box target's module directly (one
    forward and backward pass each), as the query adapters count their queries."""
    target.queries = getattr(target, "queries", 0) + int(n)


@contextlib.contextmanager
def evaluating(*modules: nn.Module) -> Iterator[None]:
    """Put modules in eval mode for the block and restore their previous mode."""
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global RNG for the block (weight initialisation) and restore it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed) % (2**63))
        yield


def device_of(module: nn.Module) -> torch.device:
    params = list(module.parameters())
    return params[0].device if params else torch.device("cpu")


def num_classes_of(target: Any, *label_arrays: np.ndarray | None) -> int:
    """The number of classes: the target's if it knows it, else from the labels."""
    known = getattr(target, "num_classes", None)
    if known:
        return int(known)
    return int(max(int(np.max(a)) for a in label_arrays if a is not None and len(a)) + 1)


def data_box(x: np.ndarray) -> tuple[float, float]:
    """The range ``[min, max]`` of the features (the box searches and noise stay in)."""
    lo, hi = float(np.min(x)), float(np.max(x))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def is_binary(x: np.ndarray) -> bool:
    """True when every feature value is 0 or 1."""
    return bool(np.isin(np.unique(x[: min(len(x), 2000)]), (0.0, 1.0)).all())


def auc(scores: np.ndarray, member: np.ndarray) -> float:
    """ROC AUC (0.5 when one class is missing)."""
    member = np.asarray(member, bool)
    if member.all() or not member.any():
        return 0.5
    return float(roc_auc_score(member, np.asarray(scores, np.float64)))


def balanced_rows(member: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``max_rows`` flat indices into ``member (R, N)``, half members, half not."""
    flat = np.asarray(member, bool).ravel()
    ins, outs = np.flatnonzero(flat), np.flatnonzero(~flat)
    half = max(1, max_rows // 2)
    take_in = rng.choice(ins, size=min(half, ins.size), replace=False)
    take_out = rng.choice(outs, size=min(half, outs.size), replace=False)
    return np.sort(np.concatenate([take_in, take_out]))


def stable_log_odds(p: np.ndarray) -> np.ndarray:
    """``log p - log(1 - p)`` with probabilities clipped to ``[1e-15, 1 - 1e-15]``."""
    p = np.clip(np.asarray(p, np.float64), 1e-15, 1 - 1e-15)
    return np.log(p) - np.log1p(-p)


# ----------------------------------------------------------------------------- classifiers


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
    epochs: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
) -> GroupedMLP:
    """Train every group's network on its own rows, all groups in one batched step.

    Each step draws ``batch_size`` rows from every group (cycling through a fresh
    permutation of the group's rows); an epoch has as many steps as the average group
    needs to see its rows once.
    """
    xt = torch.as_tensor(np.asarray(x, np.float32))
    yt = torch.as_tensor(np.asarray(labels, np.float32))
    groups = np.asarray(groups, np.int64)
    g_count = net.w1.shape[0]
    members = [np.flatnonzero(groups == g) for g in range(g_count)]
    present = np.array([m.size > 0 for m in members])
    gen = np.random.default_rng(int(seed) % (2**63))
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    mask = torch.as_tensor(present)
    steps = max(1, math.ceil(np.mean([m.size for m in members if m.size]) / batch_size))
    net.train()
    with single_thread():
        _grouped_epochs(net, opt, loss_fn, xt, yt, members, mask, gen, epochs, steps, batch_size)
    net.eval()
    return net


def _grouped_epochs(net, opt, loss_fn, xt, yt, members, mask, gen, epochs, steps, batch_size):
    g_count = len(members)
    for _ in range(epochs):
        orders = [gen.permutation(m) if m.size else m for m in members]
        for s in range(steps):
            idx = np.zeros((g_count, batch_size), np.int64)
            for g, order in enumerate(orders):
                if order.size:
                    idx[g] = order[(s * batch_size + np.arange(batch_size)) % order.size]
            it = torch.as_tensor(idx)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xt[it])[mask], yt[it][mask])
            loss.backward()
            opt.step()


def mlp(in_features: int, hidden: tuple[int, ...], out: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, out))
    return nn.Sequential(*layers)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread for the block (and restore the setting).

    Attacks run many small tensor operations (small networks, small batches, bisection
    steps), where thread synchronisation costs more than a second core saves; on a
    shared machine a thread waiting for a busy core stalls every operation (we measured
    the batched boundary search 9x slower with two threads than with one on a loaded
    two-core machine, and at most 2x faster on an idle one).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def single_threaded(method):
    """Decorator: run an attack's ``_fit``/``_score`` under :func:`single_thread`."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with single_thread():
            return method(*args, **kwargs)

    return wrapper


def train_binary(
    net: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    labels: np.ndarray,
    seed: int,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int | None = None,
    weight_decay: float = 1e-4,
    holdout: float = 0.0,
) -> nn.Module:
    """Train ``net(*inputs) -> logit`` on binary labels with Adam and BCE (seeded).

    The default batch size gives every epoch about 16 steps (between 16 and 256 rows),
    so that small training sets are not trained in a handful of steps. With
    ``holdout > 0`` that fraction of the rows is set aside and the weights of the epoch
    with the highest AUC on them are kept (``net.holdout_auc`` records it).
    """
    y = torch.as_tensor(np.asarray(labels, np.float32))
    n = len(y)
    gen = torch.Generator().manual_seed(int(seed) % (2**63))
    rows = torch.randperm(n, generator=gen)
    n_hold = int(n * holdout) if n * holdout >= 20 else 0
    held, train = rows[:n_hold], rows[n_hold:]
    if batch_size is None:
        batch_size = int(min(256, max(16, len(train) // 16)))
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    best, best_state = -1.0, None
    with single_thread():
        for _ in range(epochs):
            net.train()
            order = train[torch.randperm(len(train), generator=gen)]
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(net(*(t[idx] for t in inputs)), y[idx])
                loss.backward()
                opt.step()
            if n_hold:
                score = auc(
                    predict_logit(net, tuple(t[held] for t in inputs)), y[held].numpy() > 0.5
                )
                if score > best:
                    best, best_state = score, copy.deepcopy(net.state_dict())
        if best_state is not None:
            net.load_state_dict(best_state)
            net.holdout_auc = best
    net.eval()
    return net


@torch.no_grad()
def predict_logit(
    net: nn.Module, inputs: tuple[torch.Tensor, ...], batch: int = 8192
) -> np.ndarray:
    """``net``'s logits in eval mode, as float64."""
    net.eval()
    n = len(inputs[0])
    out = [net(*(t[i : i + batch] for t in inputs)).double() for i in range(0, n, batch)]
    return torch.cat(out).numpy() if out else np.zeros(0)


@dataclass
class Standardizer:
    """Per-feature z-scores with the training rows' mean and standard deviation."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        x = np.asarray(x, np.float64)
        return cls(x.mean(axis=0), np.maximum(x.std(axis=0), 1e-8))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.std).astype(np.float32)


@dataclass
class AttackClassifier:
    """A fitted member/non-member classifier; :meth:`decision` gives log-odds."""

    kind: str
    scale: Standardizer
    model: Any
    group_models: dict[int, Any] = field(default_factory=dict)
    fallback: Any = None
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


def _sk_decision(model: Any, z: np.ndarray) -> np.ndarray:
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(z), np.float64)
    return stable_log_odds(model.predict_proba(z)[:, 1])


def _sk_model(kind: str, seed: int, hidden: tuple[int, ...], epochs: int) -> Any:
    seed32 = int(seed) % (2**32)
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=1000)
    if kind == "gbdt":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(random_state=seed32)
    if kind == "sklearn_mlp":
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(
            hidden_layer_sizes=hidden, max_iter=max(epochs, 50), random_state=seed32
        )
    raise ValueError(f"unknown classifier kind {kind!r}")


def fit_classifier(
    x: np.ndarray,
    member: np.ndarray,
    kind: ClassifierKind,
    seed: int,
    hidden: tuple[int, ...] = (64,),
    epochs: int = 30,
    groups: np.ndarray | None = None,
    num_groups: int | None = None,
    holdout: float = 0.0,
) -> AttackClassifier:
    """Fit a membership classifier on features ``x (n, f)`` and labels ``member (n,)``.

    With ``groups`` one classifier is fitted per group (torch: a :class:`GroupedMLP`;
    scikit-learn: one estimator per group, the global one where a group lacks members
    or non-members). ``holdout`` (torch MLP without groups): the fraction of rows that
    picks the training epoch (:func:`train_binary`).
    """
    member = np.asarray(member, bool)
    if member.all() or not member.any():
        raise DataError("an attack classifier needs members and non-members to learn from")
    scale = Standardizer.fit(x)
    z = scale(x)
    if kind == "mlp":
        with seeded(seed):
            if groups is None:
                net = _squeeze(mlp(z.shape[1], hidden))
                net = train_binary(
                    net, (torch.as_tensor(z),), member, seed, epochs, holdout=holdout
                )
                return AttackClassifier(kind, scale, net)
            groups = np.asarray(groups, np.int64)
            ok = [
                g
                for g in range(int(num_groups))
                if member[groups == g].any() and not member[groups == g].all()
            ]
            grouped = GroupedMLP(int(num_groups), z.shape[1], hidden[0])
            rows = np.isin(groups, ok)
            train_grouped(grouped, z[rows], member[rows], groups[rows], seed, epochs)
            fallback = None
            if len(ok) < int(num_groups):  # one model for the classes that cannot have their own
                fallback = _squeeze(mlp(z.shape[1], hidden))
                train_binary(fallback, (torch.as_tensor(z),), member, seed, epochs)
        return AttackClassifier(
            kind, scale, grouped, fallback=fallback, trained_groups=np.array(ok)
        )
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():  # a fixed training budget, as for the torch models
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = _sk_model(kind, seed, hidden, epochs).fit(z, member)
        per_group: dict[int, Any] = {}
        for g in np.unique(groups) if groups is not None else ():
            rows = np.asarray(groups) == g
            if member[rows].all() or not member[rows].any():
                continue
            per_group[int(g)] = _sk_model(kind, seed, hidden, epochs).fit(z[rows], member[rows])
    return AttackClassifier(kind, scale, model, per_group)


class _Squeeze(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def _squeeze(net: nn.Module) -> nn.Module:
    return _Squeeze(net)
