"""mialens: membership-inference audits of machine learning classifiers.

Typical use::

    import mialens
    result = mialens.run_audit(mialens.load_config("examples/location30.yaml"), "runs/loc")
    result = mialens.audit_model(estimator, x, y, members, population=(x_pop, y_pop))

The top-level names are imported on first use, so that ``import mialens`` or
``import mialens.metrics`` does not load PyTorch (the attacks, models and audit do).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "AuditConfig": "mialens.workflows.config",
    "load_config": "mialens.workflows.config",
    "validate_config": "mialens.workflows.config",
    "AuditResult": "mialens.audit.results",
    "run_audit": "mialens.workflows.audit",
    "audit_model": "mialens.workflows.api",
    "audit_logits": "mialens.workflows.api",
    "sklearn_recipe": "mialens.workflows.api",
    "torch_recipe": "mialens.workflows.api",
    "TrainConfig": "mialens.models.recipe",
    "ModelConfig": "mialens.models.model_config",
    "analyze": "mialens.analysis.explain",
    "analyze_run": "mialens.workflows.analyse",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mialens' has no attribute {name!r}")
