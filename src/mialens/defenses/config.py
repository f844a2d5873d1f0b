"""Configuration of defence evaluations: which defences, applied how."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mialens.defenses.monitor_evaluation import MonitorEvaluation
from mialens.defenses.output import build_output_defense
from mialens.errors import ConfigError


class SampleAwareConfig(BaseModel):
    """A defence aimed at the training samples most likely to leak.

    The defender flags the ``fraction`` of its training samples (per class) that an
    outlier ``detector`` in input space finds most atypical, the samples Khalil et al.
    2025 find most vulnerable, and then removes them, down-weights their loss, smooths
    their labels more strongly, or clips their per-sample gradients to ``clip_norm``
    with Gaussian noise of ``noise_multiplier * clip_norm`` on every step's summed
    gradient (DP-SGD's mechanism for them alone). ``counterpart: true`` applies the same action
    to the same number of *random* training samples instead: the uniform baseline the
    sample-aware defence must beat on privacy per accuracy point.
    """

    model_config = ConfigDict(extra="forbid")

    action: Literal["remove", "downweight", "smooth", "clip"]
    detector: Literal["knn", "lof", "isolation_forest", "centroid"] = "knn"
    fraction: float = Field(default=0.05, gt=0.0, lt=1.0)
    weight: float = Field(default=0.2, ge=0.0, le=1.0, description="downweight: loss weight")
    smoothing: float = Field(default=0.5, gt=0.0, le=1.0, description="smooth: label smoothing")
    clip_norm: float = Field(default=1.0, gt=0.0, description="clip: per-sample gradient norm")
    noise_multiplier: float = Field(
        default=1.0, ge=0.0, description="clip: noise standard deviation / clip_norm"
    )
    counterpart: bool = Field(default=False, description="same action on random samples")


class DefenseSpec(BaseModel):
    """One defence to evaluate: overrides of the audit's training recipe and settings,
    an output defence, or a sample-aware training change (or a combination)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, description="label of this defence in defenses.json and the report"
    )
    train: dict[str, Any] = Field(default_factory=dict, description="overrides of `train:`")
    audit: dict[str, Any] = Field(default_factory=dict, description="overrides of `audit:`")
    output: str | dict[str, Any] | None = Field(default=None, description="an output defence")
    sample_aware: SampleAwareConfig | None = None

    @model_validator(mode="after")
    def _known_output(self) -> DefenseSpec:
        if self.output is not None:
            build_output_defense(self.output)  # raises a ConfigError naming the problem
        return self

    @property
    def folder(self) -> str:
        """The name of this defence's run folder, see :func:`defense_folder`."""
        return defense_folder(self.name)


_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_HASHED = re.compile(r".*-[0-9a-f]{10}")


def defense_folder(name: str) -> str:
    """A safe folder name for the defence ``name``, one-to-one with the name.

    A name made of letters, digits, ``_``, ``.`` and ``-`` that does not start with a dot
    is its own folder; any other name (``..``, ``wd a``, ``a/b``) becomes a restricted
    slug plus the first 10 hex digits of the SHA-256 of the exact name, which never
    equals a kept name (kept names ending in ``-`` and 10 hex digits are hashed too).
    """
    if _SAFE.fullmatch(name) and not _HASHED.fullmatch(name):
        return name
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-")[:48] or "defense"
    return f"{slug}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:10]}"


class DefenseSettings(BaseModel):
    """The `defenses:` section: the defences and how every one is attacked."""

    model_config = ConfigDict(extra="forbid")

    evaluate: list[DefenseSpec] = Field(default_factory=list)
    label_only_attacks: list[str | dict[str, Any]] = Field(
        default_factory=lambda: ["gap"],
        description="attacks added for output defences, which only touch confidences",
    )
    include_undefended: bool = Field(default=True, description="evaluate the plain recipe too")
    monitor: MonitorEvaluation | None = Field(
        default=None, description="evaluate the query monitor in front of the undefended target"
    )

    @model_validator(mode="after")
    def _unique_names(self) -> DefenseSettings:
        """Every defence has its own name and run folder (case-insensitively, for file
        systems that ignore case)."""
        seen: dict[str, str] = {}
        for spec in self.evaluate:
            key = spec.folder.lower()
            if key in seen:
                if seen[key] == spec.name:
                    raise ConfigError(
                        f"two defences are named {spec.name!r}; give each its own name"
                    )
                raise ConfigError(
                    f"{seen[key]!r} and {spec.name!r} would share the run folder "
                    f"{spec.folder!r} (names differing only in case); rename one"
                )
            seen[key] = spec.name
        return self
