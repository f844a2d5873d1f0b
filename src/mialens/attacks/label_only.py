"""Label-only attacks: the adversary sees predicted labels only.

These attacks receive the target through an adapter that refuses scores
(:class:`mialens.targets.LabelOnlyTarget`) and counts every query. The boundary-distance
attack lives in :mod:`mialens.attacks.boundary`, the transfer attack in
:mod:`mialens.attacks.transfer` and YOQO in :mod:`mialens.attacks.yoqo`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Literal

import numpy as np
from pydantic import Field

from mialens.attacks.adversary_data import data_box, is_binary
from mialens.attacks.attack_models import fit_classifier
from mialens.attacks.base import AttackParams, Needs, QueryAttack, QueryData, QueryReferences
from mialens.attacks.networks import single_threaded
from mialens.augment import query_transforms
from mialens.seeding import rng


class GapAttack(QueryAttack):
    """Gap attack (Yeom et al. 2018, Sec. 3.3; the label-only baseline of Choquette-Choo
    et al. 2021, Sec. 3): a sample is called a member iff the target classifies it
    correctly. Its advantage equals the train-test accuracy gap."""

    name = "gap"
    discrete_scores = True
    summary = "gap: a correctly classified sample is called a member (label-only, 1 query)"
    paper = "Yeom et al. 2018 (CSF), Sec. 3.3; Choquette-Choo et al. 2021 (ICML), Sec. 3"
    threat_model = "label"
    needs = Needs("queries")

    @single_threaded
    def _score(self, target, data: QueryData) -> np.ndarray:
        return (target.labels(data.x) == data.labels).astype(np.float64)


class AugmentationParams(AttackParams):
    perturbation: Literal["auto", "augment", "gaussian", "bitflip"] = Field(
        default="auto",
        description="auto: flips and shifts for images, bit flips for binary features, "
        "Gaussian noise otherwise",
    )
    flip: bool = Field(default=False, description="augment: also query mirrored images")
    shift: int = Field(default=1, ge=0, description="augment: shifts in [-shift, shift]^2")
    num_noise: int = Field(default=30, ge=1, description="gaussian/bitflip: noisy queries")
    noise_std: float = Field(default=0.1, gt=0, description="gaussian: std / feature range")
    flip_prob: float = Field(default=0.05, gt=0, lt=1, description="bitflip: per feature")
    scorer: Literal["threshold", "logistic"] = Field(
        default="logistic",
        description="threshold: fraction of correct queries; logistic: logistic regression "
        "on the correctness vector, fitted on reference models",
    )
    max_references: int = Field(default=4, ge=1, description="logistic: reference models used")


View = Callable[[np.ndarray], np.ndarray]


def perturbation_views(params: AugmentationParams, x: np.ndarray, seed: int) -> list[View]:
    """The queried versions of the samples, the unmodified one first.

    Noise is drawn once per query index (seeded), so the same sample gets the same
    perturbations whichever model is queried: reference and target correctness vectors
    line up feature by feature.
    """
    kind = params.perturbation
    if kind == "auto":
        kind = "augment" if x.ndim == 4 else ("bitflip" if is_binary(x) else "gaussian")
    if kind == "augment":
        if x.ndim != 4:
            raise ValueError("perturbation 'augment' (flips and shifts) needs images")
        return list(query_transforms(params.flip, params.shift))
    lo, hi = data_box(x)
    views: list[View] = [lambda b: b]
    for q in range(params.num_noise):

        def view(b: np.ndarray, q: int = q) -> np.ndarray:
            g = rng(seed, "augmentation-noise", q, len(b))
            if kind == "bitflip":
                flips = g.random(b.shape) < params.flip_prob
                return np.where(flips, 1.0 - b, b).astype(np.float32)
            noise = g.standard_normal(b.shape) * params.noise_std * (hi - lo)
            return (b + noise).astype(np.float32)

        views.append(view)
    return views


def correctness(labels_of, x: np.ndarray, y: np.ndarray, views: list[View]) -> np.ndarray:
    """``(N, Q)``: whether each perturbed query is still classified as its label."""
    return np.stack([labels_of(view(x)) == y for view in views], axis=1)


class AugmentationAttack(QueryAttack):
    """Data-augmentation / noise-robustness attack (Choquette-Choo et al. 2021, ICML).

    Members keep their label under small perturbations more often than non-members.
    Every sample is queried unmodified and under each perturbation: shifts of images
    by up to ``shift`` pixels (the paper's "data augmentation" translations,
    whose official code also offers rotations) and, with ``flip``, their mirror images
    (useful for models trained with flips), and
    for tabular data Gaussian noise or, for binary features, random bit flips (the
    noise-robustness variant). The binary correctness vector is scored by

    * ``threshold``: the fraction of correctly classified queries (the ROC sweeps the
      threshold the paper picks on shadow models), or
    * ``logistic``: a logistic regression on the vector, fitted on reference models'
      members and non-members (the paper's learned attack model; its official code fits
      one small network per class instead). The regression is convex and fitted by
      lbfgs to its tolerance, i.e. to convergence; its iterations are reported in
      ``extra()["attack_training"]``.
    """

    name = "augmentation"
    discrete_scores = True
    summary = (
        "augmentation: correctness under shifts (images) or noise/bit flips (tabular), "
        "thresholded or scored by a logistic regression on reference models (label-only)"
    )
    paper = "Choquette-Choo et al. 2021, Label-Only Membership Inference Attacks (ICML)"
    threat_model = "label"
    needs = Needs("queries", references="offline")
    Params = AugmentationParams

    @classmethod
    def needs_for(cls, params: AugmentationParams) -> Needs:
        """Reference models only for the logistic scorer."""
        return replace(cls.needs, references="offline" if params.scorer == "logistic" else "none")

    @single_threaded
    def _fit(self, refs: QueryReferences | None) -> None:
        self.model_ = None
        if self.params.scorer != "logistic":
            return
        assert refs is not None
        data = refs.data
        views = perturbation_views(self.params, data.x, data.seed)
        pick = rng(data.seed, "augmentation-refs")
        count = min(self.params.max_references, len(refs.models))
        chosen = np.sort(pick.choice(len(refs.models), count, replace=False))
        feats, member = [], []
        for r in chosen:
            # label queries, answered as the target answers them (through its defence)
            feats.append(correctness(refs.models[r].labels, data.x, data.labels, views))
            member.append(refs.member[r])
        self.model_ = fit_classifier(
            np.concatenate(feats).astype(np.float64),
            np.concatenate(member),
            "logistic",
            data.seed,
        )
        self.coefficients_ = self.model_.model.coef_[0].tolist()

    @single_threaded
    def _score(self, target, data: QueryData) -> np.ndarray:
        views = perturbation_views(self.params, data.x, data.seed)
        correct = correctness(target.labels, data.x, data.labels, views)
        if self.model_ is None:
            return correct.mean(axis=1)
        return self.model_.decision(correct.astype(np.float64))

    def extra(self) -> dict:
        if self.model_ is None:
            return {}
        return {
            "logistic_coefficients": [float(c) for c in self.coefficients_],
            **self.model_.extra(),
        }
