"""What an adversary may query: uniform adapters around the models users bring.

Every adapter returns *logits* of shape ``(n, n_classes)`` for a batch of inputs and
counts the samples it was asked about. Probability outputs are turned into
log-probabilities, which are valid logits (softmax maps them back to the
probabilities), floored at ``1e-30`` so that zero probabilities stay finite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from mialens.errors import DataError
from mialens.validation import check_logits

OutputKind = Literal["auto", "logits", "probabilities"]
PROBABILITY_FLOOR = 1e-30


def probabilities_to_logits(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities with a floor, as float32 logits."""
    return np.log(np.maximum(probs.astype(np.float64), PROBABILITY_FLOOR)).astype(np.float32)


def looks_like_probabilities(out: np.ndarray) -> bool:
    """True when every row is a probability vector (non-negative, summing to 1)."""
    return bool(
        out.size
        and out.min() >= 0
        and out.max() <= 1
        and np.allclose(out.sum(axis=-1), 1, atol=1e-4)
    )


class Target:
    """A queryable model. Subclasses implement :meth:`_logits`."""

    def __init__(self, num_classes: int | None = None) -> None:
        self.num_classes = num_classes
        self.queries = 0

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits for the batch ``x``, validated (finite, one column per class)."""
        x = np.ascontiguousarray(x, dtype=np.float32)  # torch rejects negative strides
        if len(x) == 0:
            raise DataError("no samples to query: the batch is empty")
        out = check_logits(self._logits(x), "model output", n=len(x))
        if self.num_classes is not None and out.shape[-1] != self.num_classes:
            raise DataError(
                f"the model returned {out.shape[-1]} columns but the data has "
                f"{self.num_classes} classes"
            )
        self.queries += len(x)
        return out

    def labels(self, x: np.ndarray) -> np.ndarray:
        """Predicted labels (what a label-only adversary sees)."""
        return self.logits(x).argmax(axis=-1)

    def _logits(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class TorchTarget(Target):
    """A PyTorch module returning logits (or probabilities with ``output=...``)."""

    def __init__(
        self,
        module: nn.Module,
        num_classes: int | None = None,
        output: OutputKind = "logits",
        batch_size: int = 2048,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(num_classes)
        self.module = module
        self.output = output
        self.batch_size = batch_size
        params = list(module.parameters())
        self.device = torch.device(device) if device else (params[0].device if params else "cpu")

    @torch.no_grad()
    def _logits(self, x: np.ndarray) -> np.ndarray:
        was_training = self.module.training
        self.module.eval()
        try:
            chunks = [
                self.module(torch.as_tensor(x[i : i + self.batch_size], device=self.device))
                .float()
                .cpu()
                .numpy()
                for i in range(0, len(x), self.batch_size)
            ]
        finally:
            self.module.train(was_training)
        return _convert(np.concatenate(chunks), self.output)


class SklearnTarget(Target):
    """A scikit-learn classifier with ``predict_proba`` (inputs are flattened)."""

    def __init__(self, estimator: Any, num_classes: int | None = None) -> None:
        if not hasattr(estimator, "predict_proba"):
            raise DataError(
                f"{type(estimator).__name__} has no predict_proba; wrap it in "
                "sklearn.calibration.CalibratedClassifierCV or pass a callable returning scores"
            )
        super().__init__(num_classes)
        self.estimator = estimator

    def _logits(self, x: np.ndarray) -> np.ndarray:
        probs = np.asarray(self.estimator.predict_proba(x.reshape(len(x), -1)), dtype=np.float64)
        classes = getattr(self.estimator, "classes_", None)
        if (
            self.num_classes is not None
            and classes is not None
            and len(classes) != self.num_classes
        ):
            # The estimator saw only some classes: place its columns at their class indices.
            full = np.zeros((len(x), self.num_classes))
            full[:, np.asarray(classes, dtype=np.int64)] = probs
            probs = full
        return probabilities_to_logits(probs)


class CallableTarget(Target):
    """Any function mapping a batch of inputs to logits or probabilities."""

    def __init__(
        self,
        fn: Callable[[np.ndarray], Any],
        num_classes: int | None = None,
        output: OutputKind = "auto",
    ) -> None:
        super().__init__(num_classes)
        self.fn = fn
        self.output = output

    def _logits(self, x: np.ndarray) -> np.ndarray:
        out = self.fn(x)
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu().numpy()
        return _convert(np.asarray(out, dtype=np.float32), self.output)


def _convert(out: np.ndarray, output: OutputKind) -> np.ndarray:
    if output == "probabilities" or (output == "auto" and looks_like_probabilities(out)):
        if output == "probabilities" and not looks_like_probabilities(out):
            raise DataError(
                "the model was declared to return probabilities, but its rows are not "
                "non-negative vectors summing to 1; declare output='logits' instead"
            )
        return probabilities_to_logits(out)
    return out


class LabelOnlyTarget(Target):
    """What a label-only adversary may query: predicted labels, never scores.

    Wraps another target; :meth:`labels` is forwarded (and counted), :meth:`logits` is
    refused, so an attack declared label-only cannot read confidences by accident.
    """

    def __init__(self, inner: Target) -> None:
        super().__init__(inner.num_classes)
        self.inner = inner

    def logits(self, x: np.ndarray) -> np.ndarray:
        raise PermissionError("a label-only adversary cannot read the model's scores")

    def labels(self, x: np.ndarray) -> np.ndarray:
        out = self.inner.labels(x)
        self.queries += len(x)
        return out


class BlackBoxTarget(Target):
    """Scores of another target without access to its parameters (counted queries)."""

    def __init__(self, inner: Target) -> None:
        super().__init__(inner.num_classes)
        self.inner = inner

    def _logits(self, x: np.ndarray) -> np.ndarray:
        return self.inner.logits(x)


def restrict(target: Target, threat_model: str) -> Target:
    """The view of ``target`` an adversary of ``threat_model`` gets, with a fresh counter.

    ``label``: predicted labels only; ``score``: logits; ``white-box``: the target
    itself (for a :class:`TorchTarget`, its module and parameters).
    """
    if threat_model == "label":
        return LabelOnlyTarget(target)
    if threat_model == "score":
        return BlackBoxTarget(target)
    if threat_model == "white-box":
        if not isinstance(target, TorchTarget):
            raise DataError("white-box attacks need a PyTorch module as the target")
        return TorchTarget(target.module, target.num_classes, target.output, target.batch_size)
    raise ValueError(f"unknown threat model {threat_model!r}")


def as_target(model: Any, num_classes: int | None = None, output: OutputKind = "auto") -> Target:
    """Wrap a torch module, scikit-learn classifier or callable as a :class:`Target`."""
    if isinstance(model, Target):
        return model
    if isinstance(model, nn.Module):
        return TorchTarget(model, num_classes, output="logits" if output == "auto" else output)
    if hasattr(model, "predict_proba"):
        return SklearnTarget(model, num_classes)
    if callable(model):
        return CallableTarget(model, num_classes, output)
    raise DataError(
        f"cannot query a {type(model).__name__}: pass a torch.nn.Module, a scikit-learn "
        "classifier with predict_proba, a callable returning logits or probabilities, or "
        "precomputed logits"
    )
