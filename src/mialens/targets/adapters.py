"""What an adversary may query: uniform adapters around the models users bring.

Every adapter returns *logits* of shape ``(n, n_classes)`` for a batch of inputs and
counts the samples it was asked about. Probability outputs are turned into
log-probabilities, which are valid logits (softmax maps them back to the
probabilities): each row is clipped at a floor, so that zeros stay finite, and
renormalised to sum to 1.

Probabilities are recognised (``output="auto"``) when every row is non-negative, at most
1, and sums to 1 within the tolerance of its rounding. Values that are all multiples of
``u = 10**-d`` (``1 <= d <= 6``) are taken as rounded to ``d`` decimals: rounding moves
each of the ``C`` entries by at most ``u / 2``, so a row sum by at most ``C * u / 2``
(plus :data:`SUM_TOLERANCE` for float error); other values get :data:`SUM_TOLERANCE`
alone. A zero after rounding stands for a probability in ``[0, u / 2)`` and is floored
at the middle of that interval, ``u / 4``; exact zeros are floored at
:data:`PROBABILITY_FLOOR`. What stays ambiguous: exact probabilities that happen to be
multiples of ``10**-d`` (a decision tree's leaf fractions) get the rounded floor, and
logits that are themselves non-negative, at most 1 and sum to about 1 are taken as
probabilities; declare ``output`` for such models. Values in ``[0, 1]`` whose rows sum
to less than 1 beyond rounding (top-k or truncated probabilities, or small logits) are
refused under ``"auto"`` with a request to declare ``output``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mialens.errors import ConfigError, DataError
from mialens.threads import fixed_threads
from mialens.validation import check_logits

if TYPE_CHECKING:  # PyTorch loads only where a torch module is wrapped or tensors read
    import torch
    from torch import nn

OutputKind = Literal["auto", "logits", "probabilities"]
PROBABILITY_FLOOR = 1e-30
"""Floor of exact probabilities: ``log(1e-30) = -69`` keeps a zero finite."""
SUM_TOLERANCE = 1e-4
"""How far from 1 the row sums of unrounded (float) probabilities may lie."""
MAX_DECIMALS = 6
_KIND_NAMES = {"U": "strings", "S": "bytes", "O": "Python objects", "c": "complex numbers"}


def check_output_kind(output: str) -> OutputKind:
    """``output`` if it names an output kind, else a :class:`ConfigError`."""
    if output not in ("auto", "logits", "probabilities"):
        raise ConfigError(f"output must be 'auto', 'logits' or 'probabilities'; got {output!r}")
    return output


def probabilities_to_logits(probs: np.ndarray, floor: float = PROBABILITY_FLOOR) -> np.ndarray:
    """Log-probabilities as float32 logits: rows clipped at ``floor``, renormalised to 1."""
    p = np.maximum(np.asarray(probs, dtype=np.float64), floor)
    return np.log(p / p.sum(axis=-1, keepdims=True)).astype(np.float32)


def rounding_unit(values: np.ndarray) -> float | None:
    """The unit ``10**-d`` (largest first, ``1 <= d <= 6``) of which every value is a
    multiple, up to the float precision of ``values``; None when there is none."""
    v = np.asarray(values)
    eps = float(np.finfo(v.dtype).eps) if v.dtype.kind == "f" else 0.0
    flat = v.ravel().astype(np.float64)
    for d in range(1, MAX_DECIMALS + 1):
        scale = 10.0**d
        tol = scale * eps + 1e-9
        # a cheap look at the first values before the whole array
        if all(
            np.all(np.abs(part * scale - np.rint(part * scale)) <= tol)
            for part in (flat[:4096], flat)
        ):
            return 1 / scale
    return None


def sum_tolerance(num_classes: int, unit: float | None) -> float:
    """How far from 1 a row of ``num_classes`` probabilities rounded to ``unit`` may sum."""
    return SUM_TOLERANCE + (num_classes * unit / 2 if unit else 0.0)


def probability_floor(unit: float | None) -> float:
    """The floor of a zero: ``unit / 4`` after rounding, :data:`PROBABILITY_FLOOR` if exact."""
    return unit / 4 if unit else PROBABILITY_FLOOR


def classify_outputs(out: np.ndarray) -> tuple[str, float | None]:
    """``("probabilities" | "logits" | "ambiguous", rounding unit)`` of model outputs.

    Ambiguous: every value in ``[0, 1]`` and every row sum in ``(0, 1]`` up to rounding,
    but some row sums to less than 1 beyond rounding.
    """
    out = np.asarray(out)
    if not out.size or not np.isfinite(out).all() or out.min() < 0 or out.max() > 1 + 1e-6:
        return "logits", None
    unit = rounding_unit(out)
    sums = out.sum(axis=-1, dtype=np.float64)
    tol = sum_tolerance(out.shape[-1], unit)
    if np.all(np.abs(sums - 1) <= tol):
        return "probabilities", unit
    if np.all((sums > 0) & (sums <= 1 + tol)):
        return "ambiguous", unit
    return "logits", None


def looks_like_probabilities(out: np.ndarray) -> bool:
    """True when every row is a probability vector, possibly rounded (see the module)."""
    return classify_outputs(out)[0] == "probabilities"


def check_probabilities(out: np.ndarray, name: str) -> float | None:
    """Validate outputs declared to be probabilities; returns their rounding unit.

    Rows may sum to less than 1 (top-k or truncated answers): they are renormalised.
    """
    out = np.asarray(out)
    if not np.isfinite(out).all():
        return None  # reported by check_logits
    low, high = float(out.min()), float(out.max())
    if low < 0 or high > 1 + 1e-6:
        raise DataError(
            f"{name} was declared to be probabilities, but it holds values outside [0, 1] "
            f"(min {low:.4g}, max {high:.4g}); if these are logits or other unnormalised "
            "scores, declare output='logits'"
        )
    unit = rounding_unit(out)
    top = float(out.sum(axis=-1, dtype=np.float64).max())
    limit = 1 + sum_tolerance(out.shape[-1], unit)
    if top > limit:
        rounded = f"rounded to {unit:g} " if unit else ""
        raise DataError(
            f"{name} was declared to be probabilities, but a row sums to {top:.4g}; "
            f"{out.shape[-1]} probabilities {rounded}sum to at most {limit:.4g}. If these are "
            "scores of another kind, declare output='logits'"
        )
    return unit


def ambiguous_outputs_error(out: np.ndarray, name: str, unit: float | None) -> DataError:
    """The error for outputs that are neither clearly probabilities nor clearly logits."""
    low = float(np.asarray(out).sum(axis=-1, dtype=np.float64).min())
    tol = sum_tolerance(np.shape(out)[-1], unit)
    return DataError(
        f"{name} is ambiguous: all values lie in [0, 1], but a row sums to {low:.4g}, while "
        f"probabilities sum to 1 within {tol:.3g}. Declare output='probabilities' if they "
        "are probabilities with mass left out (top-k or truncated answers; rows are "
        "renormalised), or output='logits' if they are logits"
    )


class OutputReader:
    """Turns one model's answers into logits, remembering what earlier batches were.

    With ``output="auto"`` every batch is classified (:func:`classify_outputs`); a model
    whose batches disagree is refused rather than read two ways. The rounding unit is
    the finest seen so far, so that later zeros are floored alike.
    """

    def __init__(self, output: OutputKind) -> None:
        self.output = check_output_kind(output)
        self.kind: str | None = None
        self.unit: float | None = None
        self.batches = 0  # probability batches read so far

    def __call__(self, out: np.ndarray, name: str = "model output") -> np.ndarray:
        if self.output == "logits" or not np.isfinite(out).all():
            return out  # non-finite values are reported by check_logits
        if self.output == "probabilities":
            unit = check_probabilities(out, name)
        else:
            kind, unit = classify_outputs(out)
            if kind == "ambiguous":
                raise ambiguous_outputs_error(out, name, unit)
            if self.kind is not None and kind != self.kind:
                raise DataError(
                    f"{name} looked like {self.kind} in an earlier batch but like {kind} in "
                    "this one; declare output='logits' or output='probabilities'"
                )
            self.kind = kind
            if kind == "logits":
                return out
        if self.batches == 0 or unit is None or self.unit is None:
            self.unit = unit if self.batches == 0 else None
        else:
            self.unit = min(self.unit, unit)
        self.batches += 1
        return probabilities_to_logits(out, probability_floor(self.unit))


def read_outputs(arrays: dict[str, np.ndarray], output: OutputKind) -> dict[str, np.ndarray]:
    """Precomputed outputs of several models as logits, judged together: all must be
    probabilities or all logits, and zeros are floored with the finest rounding unit."""
    if check_output_kind(output) == "logits":
        return arrays
    kinds, units = {}, []
    for name, arr in arrays.items():
        if output == "probabilities":
            units.append(check_probabilities(arr, name))
            continue
        kinds[name], unit = classify_outputs(arr)
        if kinds[name] == "ambiguous":
            raise ambiguous_outputs_error(arr, name, unit)
        units.append(unit)
    if len(set(kinds.values())) > 1:
        listing = ", ".join(f"{name} like {kind}" for name, kind in kinds.items())
        raise DataError(
            f"the outputs disagree: {listing}; declare output='logits' or output='probabilities'"
        )
    if "logits" in kinds.values():
        return arrays
    floor = probability_floor(None if None in units else min(units))
    return {name: probabilities_to_logits(arr, floor) for name, arr in arrays.items()}


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
        import torch

        super().__init__(num_classes)
        self.module = module
        self.output = output
        self._read = OutputReader(output)
        self.batch_size = batch_size
        params = list(module.parameters())
        self.device = torch.device(device) if device else (params[0].device if params else "cpu")

    @fixed_threads()
    def _logits(self, x: np.ndarray) -> np.ndarray:
        import torch

        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                chunks = [
                    self.module(torch.as_tensor(x[i : i + self.batch_size], device=self.device))
                    .float()
                    .cpu()
                    .numpy()
                    for i in range(0, len(x), self.batch_size)
                ]
        finally:
            self.module.train(was_training)
        return self._read(np.concatenate(chunks))


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
        self._read = OutputReader(output)

    def _logits(self, x: np.ndarray) -> np.ndarray:
        import torch

        out = self.fn(x)
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu().numpy()
        try:
            arr = np.asarray(out)
        except ValueError:  # ragged nested lists
            arr = None
        if arr is None or arr.dtype.kind not in "fiub":
            held = ""
            if arr is not None and arr.ndim > 0:
                held = f" of {_KIND_NAMES.get(arr.dtype.kind, arr.dtype)}"
            raise DataError(
                "the model callable must return numbers, an array of shape (n_samples, "
                "n_classes) with logits or probabilities (a numpy array, list or torch "
                f"tensor); it returned a {type(out).__name__}{held}"
            )
        # keep float precision: it tells rounding from float error
        arr = arr if arr.dtype.kind == "f" else arr.astype(np.float64)
        return self._read(arr)


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
    """Wrap a torch module, scikit-learn classifier or callable as a :class:`Target`;
    ``output`` says what a module or callable returns (a classifier's ``predict_proba``
    gives probabilities)."""
    from torch import nn

    check_output_kind(output)
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
