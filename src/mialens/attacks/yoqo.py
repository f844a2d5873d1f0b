"""YOQO: You Only Query Once (Wu et al. 2024, ICLR), a one-query label-only attack.

For each candidate ``(x, y)`` the adversary crafts one query ``x'`` on reference models
it trained itself: models that trained on ``x`` (IN) should still predict ``y`` at
``x'`` while models that did not (OUT) should not. ``x' = x + dx`` minimises

    mean_IN CE(f_in(x'), y) + alpha * mean_OUT CE(f_out(x'), y_out)

where ``y_out`` is each OUT model's most likely wrong label at ``x``. The
optimisation of a sample stops as soon as every IN model predicts ``y`` and every OUT
model predicts something else at ``x'`` (the "sweet spot"), or after ``steps`` Adam
steps. The target is then queried once: the score is 1 when it predicts ``y`` at ``x'``
(member), else 0. ``online: false`` is the paper's offline variant: OUT models only,
with an L2 penalty ``penalty * ||dx||^2`` keeping ``x'`` near ``x``.

Every sample is optimised at once (one batched forward/backward per reference model and
step); at most ``max_references`` reference models are used. Samples that no chosen
reference model trained on fall back to the offline objective. LeakPro's
implementation sums the per-model losses with weights 1 (IN) and ``alpha`` (OUT); we
average each side so that the balance does not depend on how many IN models a sample
happens to have.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from mialens.attacks.adversary_data import data_box
from mialens.attacks.base import AttackParams, Needs, QueryAttack, QueryData, QueryReferences
from mialens.attacks.networks import device_of, evaluating, module_of, single_threaded
from mialens.seeding import rng


class YOQOParams(AttackParams):
    steps: int = Field(default=40, ge=1, description="most optimisation steps per sample")
    lr: float = Field(default=0.02, gt=0, description="Adam step, relative to the data range")
    alpha: float = Field(default=2.0, gt=0, description="weight of the OUT models' loss")
    online: bool = True
    penalty: float = Field(default=1.0, ge=0, description="offline objective: weight of ||dx||^2")
    max_references: int = Field(default=8, ge=1)
    chunk_size: int = Field(default=4096, ge=1)


def craft_queries(
    modules: list[torch.nn.Module],
    member: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    params: YOQOParams,
    box: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """YOQO's crafted query for every sample, and whether it reached the sweet spot.

    ``member[m, n]``: whether reference ``modules[m]`` trained on sample ``n``.
    """
    out = np.empty_like(x, dtype=np.float32)
    reached = np.zeros(len(x), bool)
    for start in range(0, len(x), params.chunk_size):
        part = slice(start, start + params.chunk_size)
        out[part], reached[part] = _craft_chunk(
            modules, member[:, part], x[part], y[part], params, box
        )
    return out, reached


def _craft_chunk(modules, member, x, y, params: YOQOParams, box):
    lo, hi = box
    device = device_of(modules[0])  # the reference models' device
    x0 = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=device)
    yt = torch.as_tensor(np.asarray(y, np.int64), device=device)
    is_in = torch.as_tensor(np.asarray(member, bool), device=device)  # (M, n)
    if not params.online:
        is_in = torch.zeros_like(is_in)
    is_out = ~is_in
    no_in = ~is_in.any(0)  # offline objective (with the L2 penalty) for these samples
    n_in = is_in.sum(0).clamp_min(1).float()
    n_out = is_out.sum(0).clamp_min(1).float()
    with torch.no_grad():  # each OUT model's most likely wrong label at x
        wrong = []
        for m in modules:
            z = m(x0).float()
            z[torch.arange(len(yt), device=device), yt] = -torch.inf
            wrong.append(z.argmax(1))
        wrong_t = torch.stack(wrong)  # (M, n)
    dx = torch.zeros_like(x0, requires_grad=True)
    opt = torch.optim.Adam([dx], lr=params.lr * (hi - lo))
    active = torch.ones(len(yt), dtype=torch.bool, device=device)
    for step in range(params.steps + 1):
        xp = (x0 + dx).clamp(lo, hi)
        loss_in = torch.zeros(len(yt), device=device)
        loss_out = torch.zeros(len(yt), device=device)
        sweet = torch.ones(len(yt), dtype=torch.bool, device=device)
        for k, m in enumerate(modules):
            z = m(xp)
            pred = z.argmax(1)
            ce_y = F.cross_entropy(z, yt, reduction="none")
            ce_wrong = F.cross_entropy(z, wrong_t[k], reduction="none")
            loss_in = loss_in + torch.where(is_in[k], ce_y, 0.0)
            loss_out = loss_out + torch.where(is_out[k], ce_wrong, 0.0)
            sweet &= torch.where(is_in[k], pred == yt, pred != yt)
        active &= ~sweet.detach()
        if step == params.steps or not active.any():
            break
        per_sample = loss_in / n_in + params.alpha * loss_out / n_out
        per_sample = per_sample + no_in * params.penalty * (dx**2).flatten(1).sum(1)
        (grad,) = torch.autograd.grad((per_sample * active).sum(), [dx])
        frozen = dx.detach().clone()
        dx.grad = grad
        opt.step()
        with torch.no_grad():  # samples at their sweet spot keep their query
            dx.copy_(torch.where(active.view(-1, *[1] * (dx.dim() - 1)), dx, frozen))
    crafted = (x0 + dx.detach()).clamp(lo, hi)
    return crafted.cpu().numpy(), (~active).cpu().numpy()


class YOQOAttack(QueryAttack):
    """YOQO (see the module docstring): one crafted label query per sample.

    Per-target step (:meth:`prepare`): craft every candidate's query on the reference
    models chosen in :meth:`fit` (no target query). :meth:`score` asks the target for
    the label of each crafted query (one label query per sample).
    """

    name = "yoqo"
    discrete_scores = True
    summary = (
        "YOQO: one query per sample, crafted on IN/OUT reference models so that only a "
        "model that trained on it keeps the label (label-only)"
    )
    paper = "Wu et al. 2024, You Only Query Once: An Efficient Label-Only MIA (ICLR)"
    threat_model = "label"
    needs = Needs("queries", references="online", target_step=True)
    Params = YOQOParams

    @single_threaded
    def _fit(self, refs: QueryReferences | None) -> None:
        assert refs is not None
        count = min(self.params.max_references, len(refs.models))
        chosen = np.sort(
            rng(refs.data.seed, "yoqo-refs").choice(len(refs.models), count, replace=False)
        )
        self.modules_ = [module_of(refs.models[i], self.name) for i in chosen]
        self.member_ = np.asarray(refs.member, bool)[chosen]

    @single_threaded
    def _prepare(self, target, data: QueryData) -> None:
        with evaluating(*self.modules_):
            self.crafted_, reached = craft_queries(
                self.modules_, self.member_, data.x, data.labels, self.params, data_box(data.x)
            )
        self.sweet_spot_rate_ = float(reached.mean())

    @single_threaded
    def _score(self, target, data: QueryData) -> np.ndarray:
        return (target.labels(self.crafted_) == data.labels).astype(np.float64)

    def extra(self) -> dict:
        return {"sweet_spot_rate": self.sweet_spot_rate_}
