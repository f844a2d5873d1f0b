"""Fidelity of the reference models to a user-supplied target.

Reference-model attacks (LiRA, Attack-R, RMIA) compare the target's output on a sample
with the outputs of reference models trained like it with and without the sample
(Carlini et al. 2022, Sec. IV; Ye et al. 2022, Sec. 4). Their scores are calibrated only
when the references behave like the target: references that generalise better or worse
than the target shift every comparison and the attack's TPR with it. In an audit from a
configuration every model is trained with the same recipe by construction; a target
the user trained elsewhere is compared with its references here: the recipes the audit
was given, side by side, and the gap between the target's and the references' mean
train and test accuracy, with a warning above :data:`ACCURACY_GAP_THRESHOLD`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from mialens.models.recipe import TrainConfig

ACCURACY_GAP_THRESHOLD = 0.05
"""Largest gap (absolute, 5 percentage points) between the target's train or test
accuracy and its reference models' mean before the report warns that the references
may not follow the target's recipe."""

UNCOMPARED = ("data_sha256",)
"""Recipe entries recorded but not compared: the target's training data is not the
references' (they train on halves of the audited samples)."""


def data_sha256(x: Any, y: Any) -> str:
    """sha256 of a training set's features and labels (their shapes, dtypes and bytes),
    for the recipe record (``target_recipe={"data_sha256": data_sha256(x, y), ...}``)."""
    h = hashlib.sha256()
    for arr in (np.asarray(x), np.asarray(y)):
        h.update(f"{arr.shape}{arr.dtype}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def recipe_differences(
    target: Mapping[str, Any] | None, references: Mapping[str, Any] | None
) -> list[str]:
    """``"key: target A, references B"`` for every entry both recipes give, differently
    (nested entries by dotted key; :data:`UNCOMPARED` entries left out)."""
    if not target or not references:
        return []
    out = []
    for key in sorted(set(target) & set(references) - set(UNCOMPARED)):
        a, b = target[key], references[key]
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += [f"{key}.{line}" for line in recipe_differences(a, b)]
        elif a != b:
            out.append(f"{key}: target {a!r}, references {b!r}")
    return out


def reference_fidelity(
    target_accuracy: tuple[float, float],
    reference_accuracy: tuple[list[float], list[float]],
    target_recipe: Mapping[str, Any] | None,
    reference_recipe: Mapping[str, Any] | None,
    threshold: float = ACCURACY_GAP_THRESHOLD,
) -> dict[str, Any]:
    """The fidelity record: the target's ``(train, test)`` accuracy, each reference's
    train and test accuracies (their means and the gaps, target minus mean), both
    recipes, their differences and the warnings (gaps above ``threshold``, differences)."""
    means = [float(np.mean(values)) for values in reference_accuracy]
    gaps = {
        split: float(target_accuracy[i] - means[i]) for i, split in enumerate(("train", "test"))
    }
    differences = recipe_differences(target_recipe, reference_recipe)
    warnings = [
        f"the target's {split} accuracy ({target_accuracy[i]:.3f}) differs from its "
        f"references' mean ({means[i]:.3f}) by {abs(gaps[split]):.3f} > {threshold:g}: the "
        "references may not follow the target's recipe, which miscalibrates reference-model "
        "attacks"
        for i, split in enumerate(("train", "test"))
        if abs(gaps[split]) > threshold
    ]
    if differences:
        warnings.append(
            "the target's recipe differs from its references' in " + "; ".join(differences)
        )
    return {
        "threshold": threshold,
        "target": {"train_accuracy": target_accuracy[0], "test_accuracy": target_accuracy[1]},
        "references": {
            "train_accuracy": means[0],
            "test_accuracy": means[1],
            "train_accuracy_per_model": [float(v) for v in reference_accuracy[0]],
            "test_accuracy_per_model": [float(v) for v in reference_accuracy[1]],
        },
        "gap": gaps,
        "target_recipe": dict(target_recipe) if target_recipe else None,
        "reference_recipe": dict(reference_recipe) if reference_recipe else None,
        "recipe_differences": differences,
        "warnings": warnings,
    }


def train_recipe(train: TrainConfig) -> dict[str, Any]:
    """The recipe record of a mialens training configuration: loss, optimizer, schedule,
    augmentation and regularisation."""
    d = train.model_dump(mode="json")
    return {
        "loss": {
            "kind": "cross-entropy",
            "label_smoothing": d["label_smoothing"],
            "relaxloss": d["relaxloss"],
            "adversarial_regularization": d["adversarial_regularization"],
        },
        "optimizer": {
            k: d[k] for k in ("optimizer", "lr", "momentum", "weight_decay", "batch_size")
        },
        "epochs": d["epochs"],
        "schedule": d["schedule"],
        "augmentation": d["augment"],
        "regularisation": {k: d[k] for k in ("dropout", "early_stopping", "dp")},
    }
