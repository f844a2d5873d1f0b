"""User code named in the configuration: ``"package.module:attribute"`` import paths.

``model.factory`` names a function building a PyTorch module, called as
``function(input_shape=<tuple>, num_classes=<int>, **model.kwargs)``; ``model.estimator``
names a scikit-learn-style classifier class (or a function returning one). Importing
the path runs the user's own code, as importing any Python module does: configurations
are trusted like the code they name.

The identity of the named code (:func:`code_identity`) enters the model store's keys:
the import path and the sha256 of the source file that defines it, so that editing the
factory retrains its models instead of reusing stale ones.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mialens.errors import ConfigError

if TYPE_CHECKING:  # PyTorch loads only where a factory's model is built
    from torch import nn


def check_import_path(path: str, key: str) -> str:
    """``path`` if it looks like ``package.module:attribute``, else a ValueError."""
    module, sep, attribute = path.partition(":")
    if not sep or not module.strip() or not attribute.strip() or ":" in attribute:
        raise ValueError(
            f"{key} must be an import path 'package.module:function', e.g. "
            f"'my_models:make_net'; got {path!r}"
        )
    return path


def load_callable(path: str, key: str) -> Callable[..., Any]:
    """The callable at ``path`` (``package.module:attribute[.attribute]``), importing its
    module; a :class:`ConfigError` names ``key`` when it cannot be imported or called."""
    module_name, _, attribute = check_import_path(path, key).partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may raise anything while importing
        raise ConfigError(
            f"{key} {path!r}: cannot import module {module_name!r} ({type(exc).__name__}: "
            f"{exc}); is it installed or on PYTHONPATH?"
        ) from exc
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{key} {path!r}: module {module_name!r} has no {attribute!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{key} {path!r} is a {type(obj).__name__}, not a callable")
    return obj


def code_identity(path: str, key: str) -> dict[str, Any]:
    """The import path and the sha256 of the source file defining it (None when it has
    none, e.g. a compiled extension), and the version of its top-level package."""
    obj = load_callable(path, key)
    try:
        source = inspect.getsourcefile(obj)
    except TypeError:  # a built-in or compiled callable
        source = None
    digest = None
    if source is not None:
        with open(source, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
    package = importlib.import_module(path.partition(":")[0].split(".")[0])
    return {
        "path": path,
        "source_sha256": digest,
        "version": str(getattr(package, "__version__", None)),
    }


def build_factory_model(
    path: str, kwargs: dict[str, Any], input_shape: tuple[int, ...], num_classes: int
) -> nn.Module:
    """The module returned by ``function(input_shape=..., num_classes=..., **kwargs)``."""
    from torch import nn

    factory = load_callable(path, "model.factory")
    try:
        model = factory(input_shape=tuple(input_shape), num_classes=int(num_classes), **kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"model.factory {path!r} cannot be called as function(input_shape=..., "
            f"num_classes=..., **model.kwargs) with kwargs {sorted(kwargs)}: {exc}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model.factory {path!r} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def check_factory(
    path: str, kwargs: dict[str, Any], input_shape: tuple[int, ...], num_classes: int
) -> None:
    """Build the factory's module (leaving the global RNG as it was) and refuse it, before
    any training, unless it answers logits for the data (:func:`check_factory_model`)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        model = build_factory_model(path, kwargs, input_shape, num_classes)
    check_factory_model(model, path, input_shape, num_classes)


def check_factory_model(
    model: nn.Module, path: str, input_shape: tuple[int, ...], num_classes: int
) -> None:
    """Refuse a module that fails on a batch of two samples of ``input_shape`` or whose
    outputs are not ``(2, num_classes)`` logits, before any training."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            out = model(torch.zeros((2, *input_shape)))
    except Exception as exc:  # the user's forward pass may raise anything
        raise ConfigError(
            f"model.factory {path!r} does not fit the data: its model fails on a batch of 2 "
            f"samples of input_shape={tuple(input_shape)} ({type(exc).__name__}: {exc}); "
            "size its first layer from the input_shape argument the factory receives (e.g. "
            "nn.Flatten() then nn.Linear(math.prod(input_shape), ...))"
        ) from exc
    finally:
        model.train(was_training)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if shape != (2, num_classes):
        got = f"shape {shape}" if shape is not None else f"a {type(out).__name__}"
        raise ConfigError(
            f"model.factory {path!r}: the model must return logits of shape (batch, "
            f"{num_classes}) for {num_classes} classes; on a batch of 2 it returned {got}"
        )
