"""White-box attacks: the adversary holds the target's parameters.

Both attacks read per-sample gradients of the cross-entropy loss with respect to the
parameters, in float64 and in chunks of samples: with ``torch.func``
(``functional_call`` + ``vmap(grad)``) for any layer, and for ``nn.Linear`` layers
exactly and much faster from one batched backward pass (a sample's weight gradient is
the outer product of the layer's input and output gradient). A *layer* is a module
holding parameters directly (e.g. ``body.1`` or ``head`` of mialens' MLP); its
gradient is that of its weight and bias.

* :class:`GradientNormAttack`: the L2 norm of the per-sample gradient (members sit near
  a minimum of the training loss, so their gradients are small; Nasr et al. 2019 show
  the gradient-norm gap between members and non-members, and Rezaei & Liu 2021, "On
  the difficulty of membership inference attacks", attack with it), calibrated per
  sample on reference models in the manner of LiRA's offline test (Carlini et al.
  2022): ``score = (mu_out(x) - log ||g(x)||) / sigma``, where ``mu_out(x)`` is the
  mean log-norm of sample ``x`` over reference models that did not train on it and
  ``sigma`` the pooled within-sample standard deviation (``calibration: none`` scores
  ``-log ||g(x)||``).
* :class:`NasrAttack`: the learned white-box attack of Nasr, Shokri & Houmansadr 2019
  (S&P), white-box attack model: per-sample gradients of chosen layers, the outputs
  (activations) of chosen layers, the loss and the one-hot label, each through its own
  small network (gradients through a "convolution" whose kernel spans a whole row of
  the gradient matrix, i.e. one shared linear map per output unit), concatenated and
  encoded into a membership logit. It is trained on reference models' members and
  non-members (the paper's shadow-model setting). The paper leaves the training length
  open; we train to convergence (:mod:`mialens.attacks.attack_models`): a seeded
  held-out ``attack_holdout`` (a fifth) of the training rows stops training once its
  loss has not improved for ``attack_patience`` (20) epochs, within
  ``attack_max_epochs`` (2000), and the best epoch's weights are kept (epochs used in
  ``extra()["attack_training"]``).
  Losses enter as ``[loss, log loss]`` and every input is standardised (gradients by
  one scale per layer) so that one learning rate suits all components.

Which layers carry the signal is reported in :meth:`extra`: the AUC of each layer's
gradient norm on the reference models, and for the learned attack how much its AUC on
held-out reference rows drops when one component is blanked out.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.func import functional_call, grad, vmap

from mialens.attacks.adversary_data import Standardizer, balanced_rows
from mialens.attacks.attack_models import AttackModelParams, check_rows, train_binary
from mialens.attacks.base import AttackParams, Needs, QueryAttack, QueryData, QueryReferences
from mialens.attacks.networks import (
    count_passes,
    device_of,
    evaluating,
    module_of,
    predict_logit,
    seeded,
    single_threaded,
)
from mialens.errors import DataError
from mialens.seeding import int_seed, rng

_FLOOR = 1e-300


def parameter_layers(module: nn.Module) -> dict[str, list[str]]:
    """Layers (modules that own parameters directly) -> their parameter names, in order."""
    layers: dict[str, list[str]] = {}
    for prefix, sub in module.named_modules():
        names = [n for n, p in sub.named_parameters(recurse=False) if p.requires_grad]
        if names:
            layers[prefix or "(root)"] = [f"{prefix}.{n}" if prefix else n for n in names]
    return layers


def resolve_layers(module: nn.Module, layers: int | list[str] | Literal["all"]) -> list[str]:
    """Layer names from ``"all"``, a count of last layers, or explicit names."""
    known = parameter_layers(module)
    names = list(known)
    if layers == "all":
        return names
    if isinstance(layers, int):
        return names[-layers:]
    missing = [n for n in layers if n not in known]
    if missing:
        raise DataError(f"unknown layers {missing}; this model's layers are {names}")
    return list(layers)


def per_sample_gradients(
    module: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    layers: list[str],
    chunk: int = 256,
) -> Iterator[dict[str, torch.Tensor]]:
    """Per-sample gradients of the cross-entropy w.r.t. the parameters of ``layers``,
    in float64, one dict ``parameter name -> (chunk, *shape)`` per chunk of samples
    (``torch.func``: ``vmap`` of ``grad`` of a ``functional_call``)."""
    net = copy.deepcopy(module).double().eval()
    wanted = {p for layer in layers for p in parameter_layers(net)[layer]}
    params = {k: v.detach() for k, v in net.named_parameters()}
    chosen = {k: v for k, v in params.items() if k in wanted}
    fixed = {k: v for k, v in params.items() if k not in wanted}
    buffers = {k: v.detach() for k, v in net.named_buffers()}

    def sample_loss(p, xi, yi):
        out = functional_call(net, ({**fixed, **p}, buffers), (xi[None],))
        return F.cross_entropy(out, yi[None])

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    device = device_of(net)  # gradients stay on the module's device
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device)
    yt = torch.as_tensor(np.asarray(y, np.int64), device=device)
    for i in range(0, len(xt), chunk):
        yield per_sample(chosen, xt[i : i + chunk], yt[i : i + chunk])


def linear_factors(
    module: nn.Module, x: np.ndarray, y: np.ndarray, layers: list[str], chunk: int = 1024
) -> Iterator[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """For ``nn.Linear`` layers on flat inputs: each sample's layer input ``a (n, in)``
    and loss gradient w.r.t. the layer output ``delta (n, out)``, in float64.

    A sample's weight gradient is the outer product ``delta a^T`` and its bias gradient
    ``delta`` (Goodfellow 2015, "Efficient per-example gradient computations"), so one
    batched forward and backward pass yields every per-sample gradient of these layers
    exactly, without materialising them. Raises ``ValueError`` when a layer is not a
    Linear layer called once on a 2-D input.
    """
    net = copy.deepcopy(module).double().eval()
    subs = dict(net.named_modules())
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(name):
        def capture(_mod, inputs, output):
            if name in seen or inputs[0].dim() != 2:
                raise ValueError(f"layer {name} is not a Linear layer used once on flat inputs")
            seen[name] = (inputs[0], output)

        return capture

    for name in layers:
        if not isinstance(subs.get(name), nn.Linear):
            raise ValueError(f"layer {name} is not an nn.Linear")
    handles = [subs[name].register_forward_hook(hook(name)) for name in layers]
    try:
        device = device_of(net)  # factors stay on the module's device
        xt = torch.as_tensor(np.asarray(x), dtype=torch.float64, device=device)
        yt = torch.as_tensor(np.asarray(y, np.int64), device=device)
        for i in range(0, len(xt), chunk):
            seen.clear()
            out = net(xt[i : i + chunk])
            loss = F.cross_entropy(out, yt[i : i + chunk], reduction="sum")
            deltas = torch.autograd.grad(loss, [seen[name][1] for name in layers])
            yield {
                name: (seen[name][0].detach(), d.detach())
                for name, d in zip(layers, deltas, strict=True)
            }
    finally:
        for h in handles:
            h.remove()


def _is_flat_linear(module: nn.Module, layer: str) -> bool:
    return isinstance(dict(module.named_modules()).get(layer), nn.Linear)


def layer_gradient_norms(
    module: nn.Module, x: np.ndarray, y: np.ndarray, layers: list[str], chunk: int = 256
) -> np.ndarray:
    """``(N, L)``: L2 norm of each sample's loss gradient w.r.t. each layer's parameters.

    Linear layers use the exact outer-product factorisation (:func:`linear_factors`):
    ``||delta a^T||^2 + ||delta||^2 = ||delta||^2 (||a||^2 + 1)``; other layers
    materialise per-sample gradients with ``torch.func``.
    """
    fast = [name for name in layers if _is_flat_linear(module, name)]
    slow = [name for name in layers if name not in fast]
    cols: dict[str, np.ndarray] = {}
    if fast:
        try:
            parts: dict[str, list[torch.Tensor]] = {name: [] for name in fast}
            subs = dict(module.named_modules())
            for factors in linear_factors(module, x, y, fast, max(chunk, 1024)):
                for name, (a, d) in factors.items():
                    bias = 1.0 if subs[name].bias is not None else 0.0
                    sq = d.pow(2).sum(1) * (a.pow(2).sum(1) + bias)
                    parts[name].append(sq.sqrt().cpu())
            cols.update({name: torch.cat(v).numpy() for name, v in parts.items()})
        except ValueError:  # e.g. a Linear on 3-D inputs: fall back to torch.func
            slow, cols = layers, {}
    if slow:
        groups = parameter_layers(module)
        parts = {name: [] for name in slow}
        for g in per_sample_gradients(module, x, y, slow, chunk):
            for name in slow:
                sq = sum(g[p].flatten(1).pow(2).sum(1) for p in groups[name])
                parts[name].append(sq.sqrt().cpu())
        cols.update({name: torch.cat(v).numpy() for name, v in parts.items()})
    return np.stack([cols[name] for name in layers], axis=1)


def _total_log_norm(per_layer: np.ndarray) -> np.ndarray:
    return 0.5 * np.log(np.maximum((per_layer**2).sum(axis=1), _FLOOR))


def _auc(scores: np.ndarray, member: np.ndarray) -> float:
    """ROC AUC (0.5 when one class is missing)."""
    member = np.asarray(member, bool)
    if member.all() or not member.any():
        return 0.5
    return float(roc_auc_score(member, np.asarray(scores, np.float64)))


class GradientNormParams(AttackParams):
    layers: int | list[str] | Literal["all"] = Field(
        default="all", description="'all', the last k layers, or layer names"
    )
    calibration: Literal["offline", "none"] = "offline"
    chunk_size: int = Field(default=256, ge=1)


class GradientNormAttack(QueryAttack):
    """Per-sample gradient norm, calibrated on reference models (module docstring)."""

    name = "gradient_norm"
    summary = (
        "gradient norm: per-sample loss-gradient norm of the parameters, calibrated per "
        "sample on OUT reference models (white-box)"
    )
    paper = (
        "Nasr et al. 2019 (S&P); Rezaei & Liu 2021 (CVPR); calibration "
        "as LiRA offline, Carlini et al. 2022 (S&P)"
    )
    threat_model = "white-box"
    needs = Needs("queries", references="offline")
    Params = GradientNormParams

    @classmethod
    def needs_for(cls, params: GradientNormParams) -> Needs:
        """Reference models only for the offline calibration."""
        return replace(cls.needs, references=params.calibration)

    def _norms(self, module: nn.Module, data: QueryData, layers: list[str]) -> np.ndarray:
        return layer_gradient_norms(module, data.x, data.labels, layers, self.params.chunk_size)

    @single_threaded
    def _fit(self, refs: QueryReferences | None) -> None:
        self.layer_auc_ = {}
        self.layers_ = None  # without references: the target's layers, resolved in score
        if refs is None:
            return
        modules = [module_of(m, self.name) for m in refs.models]
        self.layers_ = resolve_layers(modules[0], self.params.layers)
        per_layer = np.stack([self._norms(m, refs.data, self.layers_) for m in modules])
        member = np.asarray(refs.member, bool)
        logs = _total_log_norm(per_layer.reshape(-1, per_layer.shape[-1])).reshape(member.shape)
        out = ~member
        counts = out.sum(axis=0)
        if (counts == 0).any():
            raise DataError(
                f"attack {self.name!r}: {(counts == 0).sum()} samples were members of every "
                "reference model; each sample needs at least one reference model it did not train"
            )
        self.mu_out_ = np.where(out, logs, 0.0).sum(axis=0) / counts
        resid = np.where(out, logs - self.mu_out_[None], 0.0)
        self.sigma_ = float(max(np.sqrt((resid**2).sum() / max(counts.sum(), 1)), 1e-6))
        for j, layer in enumerate(self.layers_):
            self.layer_auc_[layer] = _auc(-per_layer[:, :, j].ravel(), member.ravel())

    @single_threaded
    def _score(self, target, data: QueryData) -> np.ndarray:
        module = module_of(target, self.name)
        layers = self.layers_ or resolve_layers(module, self.params.layers)
        logs = _total_log_norm(self._norms(module, data, layers))
        count_passes(target, len(data.x))
        if self.params.calibration == "none":
            return -logs
        return (self.mu_out_ - logs) / self.sigma_

    def extra(self) -> dict:
        return {"layer_auc": self.layer_auc_} if self.layer_auc_ else {}


# ----------------------------------------------------------------------------- Nasr et al.


class NasrParams(AttackModelParams):
    gradient_layers: int | list[str] = Field(
        default=1, description="gradients of the last k layers, or of these layer names"
    )
    activation_layers: int | list[str] = Field(
        default=2, description="outputs of the last k layers, or of these layer names"
    )
    max_rows: int = Field(default=4000, ge=100, description="reference rows to train on")
    lr: float = Field(default=1e-3, gt=0)
    holdout: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="reference rows held out to measure each component's contribution",
    )
    chunk_size: int = Field(default=256, ge=1)


class _GradientComponent(nn.Module):
    """Nasr et al.'s gradient encoder: a shared map of each gradient row (a conv whose
    kernel spans the row), then fully connected layers."""

    def __init__(self, rows: int, cols: int, kernels: int = 16) -> None:
        super().__init__()
        self.row = nn.Linear(cols, kernels)
        self.fc = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(rows * kernels, 64), nn.ReLU())

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return self.fc(self.row(g))


def _fc(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(width, 64), nn.ReLU())


class NasrNet(nn.Module):
    """Components (gradients, activations, loss, label) -> encoder -> membership logit."""

    def __init__(self, grad_shapes: list[tuple[int, int]], act_widths: list[int], classes: int):
        super().__init__()
        self.grads = nn.ModuleList([_GradientComponent(r, c) for r, c in grad_shapes])
        self.acts = nn.ModuleList([_fc(w) for w in act_widths])
        self.loss = _fc(2)
        self.label = _fc(classes)
        width = 64 * (len(grad_shapes) + len(act_widths) + 2)
        self.encoder = nn.Sequential(
            nn.Linear(width, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 1)
        )

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        ng, na = len(self.grads), len(self.acts)
        grads, acts, (loss, label) = parts[:ng], parts[ng : ng + na], parts[ng + na :]
        codes = [enc(g) for enc, g in zip(self.grads, grads, strict=True)]
        codes += [enc(a) for enc, a in zip(self.acts, acts, strict=True)]
        codes += [self.loss(loss), self.label(label)]
        return self.encoder(torch.cat(codes, dim=1)).squeeze(-1)


def _gradient_matrix(g: dict[str, torch.Tensor], params: list[str]) -> torch.Tensor:
    """One layer's per-sample gradient as ``(n, out, in [+ 1 for the bias])``."""
    weight = next(p for p in params if p.endswith("weight"))
    mats = [g[weight].flatten(2)]
    mats += [g[p].reshape(len(g[p]), -1, 1) for p in params if p != weight]
    return torch.cat(mats, dim=2)


def nasr_features(
    module: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    grad_layers: list[str],
    act_layers: list[str],
    num_classes: int,
    chunk: int = 256,
) -> list[np.ndarray]:
    """The attack's inputs for samples ``(x, y)``: gradient matrices of ``grad_layers``,
    outputs of ``act_layers``, ``[loss, log loss]`` and the one-hot label (float32)."""
    groups = parameter_layers(module)
    grads: list[list[np.ndarray]] = [[] for _ in grad_layers]
    try:
        subs = dict(module.named_modules())
        for factors in linear_factors(module, x, y, grad_layers, max(chunk, 1024)):
            for j, layer in enumerate(grad_layers):
                a, d = factors[layer]
                mat = d[:, :, None] * a[:, None, :]
                if subs[layer].bias is not None:
                    mat = torch.cat([mat, d[:, :, None]], dim=2)
                grads[j].append(mat.float().cpu().numpy())
    except ValueError:  # not all flat Linear layers: per-sample gradients via torch.func
        grads = [[] for _ in grad_layers]
        for g in per_sample_gradients(module, x, y, grad_layers, chunk):
            for j, layer in enumerate(grad_layers):
                grads[j].append(_gradient_matrix(g, groups[layer]).float().cpu().numpy())
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in act_layers}
    subs = dict(module.named_modules())
    hooks = [
        subs[name].register_forward_hook(
            lambda _m, _i, o, name=name: outputs[name].append(o.detach().flatten(1).cpu())
        )
        for name in act_layers
    ]
    try:
        with evaluating(module), torch.no_grad():
            xt = torch.as_tensor(np.asarray(x, np.float32), device=device_of(module))
            logits = module(xt).cpu()
    finally:
        for h in hooks:
            h.remove()
    loss = F.cross_entropy(
        logits.double(), torch.as_tensor(np.asarray(y, np.int64)), reduction="none"
    )
    loss_feats = torch.stack([loss, torch.log(loss.clamp_min(1e-30))], dim=1).numpy()
    label = np.eye(num_classes, dtype=np.float32)[np.asarray(y, np.int64)]
    acts = [torch.cat(outputs[name]).numpy() for name in act_layers]
    return [np.concatenate(parts) for parts in grads] + acts + [loss_feats, label]


class NasrAttack(QueryAttack):
    """Nasr, Shokri & Houmansadr's learned white-box attack (module docstring)."""

    name = "nasr"
    summary = (
        "Nasr et al. white-box attack: a network on per-sample gradients of chosen layers, "
        "activations, loss and label, trained on reference models (white-box)"
    )
    paper = (
        "Nasr, Shokri & Houmansadr 2019, Comprehensive Privacy Analysis of Deep Learning "
        "(S&P), white-box attack model"
    )
    threat_model = "white-box"
    needs = Needs("queries", references="offline")
    Params = NasrParams

    def _features(self, module: nn.Module, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        return nasr_features(
            module,
            x,
            y,
            self.grad_layers_,
            self.act_layers_,
            self.num_classes_,
            self.params.chunk_size,
        )

    def _scale(self, parts: list[np.ndarray]) -> tuple[torch.Tensor, ...]:
        ng = len(self.grad_layers_)
        out = [
            torch.as_tensor((p / s).astype(np.float32))
            for p, s in zip(parts[:ng], self.grad_scale_, strict=True)
        ]
        out += [torch.as_tensor(s(p)) for p, s in zip(parts[ng:], self.scalers_, strict=True)]
        return tuple(out)

    @single_threaded
    def _fit(self, refs: QueryReferences | None) -> None:
        assert refs is not None
        data = refs.data
        modules = [module_of(m, self.name) for m in refs.models]
        self.num_classes_ = int(max(data.labels.max(), 0) + 1)
        if refs.models[0].num_classes:
            self.num_classes_ = int(refs.models[0].num_classes)
        self.grad_layers_ = resolve_layers(modules[0], self.params.gradient_layers)
        self.act_layers_ = resolve_layers(modules[0], self.params.activation_layers)
        member = np.asarray(refs.member, bool)
        pick = rng(data.seed, "nasr-rows")
        rows = balanced_rows(member, self.params.max_rows, pick)
        r_idx, n_idx = np.unravel_index(rows, member.shape)
        check_rows(len(rows) - int(len(rows) * self.params.holdout), self.params.attack_holdout)
        parts_by_model, labels = [], []
        layer_norms: list[np.ndarray] = []
        all_layers = resolve_layers(modules[0], "all")
        for r in np.unique(r_idx):
            cols = n_idx[r_idx == r]
            x, y = data.x[cols], data.labels[cols]
            parts_by_model.append(self._features(modules[r], x, y))
            layer_norms.append(
                layer_gradient_norms(modules[r], x, y, all_layers, self.params.chunk_size)
            )
            labels.append(member[r, cols])
        parts = [
            np.concatenate([p[j] for p in parts_by_model]) for j in range(len(parts_by_model[0]))
        ]
        y_mem = np.concatenate(labels)
        norms = np.concatenate(layer_norms)
        self.layer_auc_ = {layer: _auc(-norms[:, j], y_mem) for j, layer in enumerate(all_layers)}
        ng = len(self.grad_layers_)
        self.grad_scale_ = [float(max(np.sqrt((p**2).mean()), 1e-12)) for p in parts[:ng]]
        self.scalers_ = [Standardizer.fit(p) for p in parts[ng:]]
        # hold out reference rows to measure which components carry the signal
        order = rng(data.seed, "nasr-holdout").permutation(len(y_mem))
        n_hold = int(len(order) * self.params.holdout)
        hold, train = order[:n_hold], order[n_hold:]
        inputs = self._scale(parts)
        with seeded(int_seed(data.seed, "nasr-init")):
            self.net_ = NasrNet(
                [tuple(p.shape[1:]) for p in parts[:ng]],
                [p.shape[1] for p in parts[ng:-2]],
                self.num_classes_,
            )
        p = self.params
        self.training_ = train_binary(
            self.net_,
            tuple(t[train] for t in inputs),
            y_mem[train],
            int_seed(data.seed, "nasr-train"),
            p.attack_max_epochs,
            p.attack_patience,
            p.attack_holdout,
            lr=p.lr,
        )
        self.component_auc_drop_ = {}
        if n_hold >= 20:
            self._measure_components(tuple(t[hold] for t in inputs), y_mem[hold])

    def _measure_components(self, held: tuple[torch.Tensor, ...], member: np.ndarray) -> None:
        """The trained network's AUC on held-out reference rows, and how much it drops
        when one component's input is blanked out."""
        base = _auc(predict_logit(self.net_, held), member)
        names = [f"gradient:{n}" for n in self.grad_layers_]
        names += [f"activation:{n}" for n in self.act_layers_] + ["loss", "label"]
        for j, name in enumerate(names):
            blank = list(held)
            blank[j] = torch.zeros_like(held[j])
            drop = base - _auc(predict_logit(self.net_, tuple(blank)), member)
            self.component_auc_drop_[name] = float(drop)
        self.holdout_auc_ = float(base)

    @single_threaded
    def _score(self, target, data: QueryData) -> np.ndarray:
        module = module_of(target, self.name)
        parts = self._features(module, data.x, data.labels)
        count_passes(target, len(data.x))
        return predict_logit(self.net_, self._scale(parts))

    def extra(self) -> dict:
        return {
            "layer_auc": self.layer_auc_,
            "component_auc_drop": self.component_auc_drop_,
            "holdout_auc": getattr(self, "holdout_auc_", None),
            "attack_training": self.training_.as_extra(),
        }
