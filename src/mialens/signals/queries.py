"""Query sets: the views of each sample that are sent to every model."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mialens.augment import Transform, query_transforms
from mialens.errors import DataError
from mialens.targets.adapters import Target


class QueryConfig(BaseModel):
    """Query augmentations (images only): flips and shifts of every sample.

    Tabular data is always queried as is. LiRA and RMIA average over the views; the
    other attacks read the unmodified view, which always comes first. Views help when
    the models were trained with the same augmentations (Carlini et al. 2022, Sec.
    VI-A); on models trained without them they are out-of-distribution noise, so an
    audit queries the training augmentations unless told otherwise.
    """

    model_config = ConfigDict(extra="forbid")

    flip: bool = Field(default=False, description="also query horizontally mirrored images")
    shift: int = Field(default=0, ge=0, description="query every shift in [-shift, shift]^2 pixels")


def transforms_for(config: QueryConfig, modality: str) -> list[Transform]:
    """The views to query for data of ``modality``."""
    if modality != "image":
        return [Transform()]
    return query_transforms(config.flip, config.shift)


def collect_logits(
    target: Target, x: np.ndarray, transforms: list[Transform], batch_size: int = 4096
) -> np.ndarray:
    """Logits of ``target`` on every view of every sample: shape ``(n, n_views, n_classes)``."""
    if len(x) == 0:
        raise DataError("no samples to query: the query set is empty")
    views = []
    for view in transforms:
        parts = [target.logits(view(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
        views.append(np.concatenate(parts))
    return np.stack(views, axis=1)
