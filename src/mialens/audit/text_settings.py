"""The sections of a text audit's configuration: the tokenizer, the causal LM, its
training recipe and the design (:class:`TextAuditSpec`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

from mialens.attacks.text_attacks import DEFAULT_TEXT_ATTACKS, TextAttack, build_text_attack
from mialens.audit.executor import ExecutorConfig
from mialens.audit.settings import check_device, check_executor_device
from mialens.data.registry import DatasetConfig
from mialens.data.secret_canaries import DEFAULT_SAMPLE, SECRET_SLOT, SecretFormat
from mialens.models.hf_folder import HFModelFolder, read_hf_folder
from mialens.models.lm_config import LMArchitecture, LMTrainConfig
from mialens.validation import check_fpr_levels

TextAttackSpec = str | dict[str, Any]
BPE_VOCAB = 1024
"""Tokens a learned BPE has unless ``tokenizer.vocab_size`` says otherwise."""


class TokenizerConfig(BaseModel):
    """How texts become tokens: UTF-8 bytes, a byte-level BPE learned on the pool and
    population texts, or a Hugging Face tokenizer saved in a local folder."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["bytes", "bpe", "hf"] = Field(default="bytes", description="bytes, bpe or hf")
    vocab_size: int | None = Field(
        default=None, ge=257, description=f"bpe: tokens to learn (default {BPE_VOCAB})"
    )
    path: Path | None = Field(default=None, description="hf: folder of save_pretrained")

    @model_validator(mode="after")
    def _path_for_hf(self) -> TokenizerConfig:
        if (self.kind == "hf") != (self.path is not None):
            raise ValueError(
                "tokenizer.path is the folder of an hf tokenizer: give it for kind hf only"
            )
        if self.kind == "bpe" and self.vocab_size is None:
            self.vocab_size = BPE_VOCAB
        if self.kind != "bpe" and self.vocab_size is not None:
            raise ValueError(
                f"tokenizer.vocab_size is the size of a learned bpe, not of {self.kind}"
            )
        if self.kind == "hf" and not self.path.is_dir():
            raise ValueError(f"tokenizer.path {self.path} is not a folder")
        return self


class TextModelConfig(LMArchitecture):
    """The causal transformer of :mod:`mialens.models.causal_lm` (its vocabulary is the
    tokenizer's)."""


class HFModelConfig(BaseModel):
    """A Hugging Face causal LM saved with ``save_pretrained`` in a local folder: every LM
    of the audit is it fine-tuned on its member half with the ``train`` recipe. Its
    architecture, vocabulary and context come from its ``config.json``; the folder is
    checked here (without importing ``transformers`` or PyTorch)."""

    model_config = ConfigDict(extra="forbid")

    hf: Path = Field(description="folder of save_pretrained (config.json, *.safetensors)")
    _folder: HFModelFolder = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _only_the_folder(cls, data: Any) -> Any:
        others = sorted(set(data) - {"hf"}) if isinstance(data, dict) else []
        if others:
            raise ValueError(
                f"with hf, drop {', '.join(map(str, others))}: a pretrained model's "
                "architecture and context come from its config.json"
            )
        return data

    @model_validator(mode="after")
    def _loadable(self) -> HFModelConfig:
        self._folder = read_hf_folder(self.hf)
        return self

    @property
    def context(self) -> int:
        """The longest token sequence (``max_position_embeddings`` or ``n_positions``)."""
        return self._folder.context

    @property
    def vocab_size(self) -> int:
        return self._folder.vocab_size


def _model_section(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    """``{hf: folder}`` is a pretrained model, another mapping the built-in transformer,
    each validated as its own section (so that an error names ``model.<key>``, not a
    branch of the union)."""
    if not isinstance(value, dict):
        return handler(value)
    section = HFModelConfig if "hf" in value else TextModelConfig
    return section.model_validate(value)


TextModel = Annotated[TextModelConfig | HFModelConfig, WrapValidator(_model_section)]
"""The built-in transformer's fields, or ``{hf: folder}``."""


class BlindBaselineSettings(BaseModel):
    """The distribution-shift gate of :mod:`mialens.audit.text_gate` (Das et al. 2024)."""

    model_config = ConfigDict(extra="forbid")

    folds: int = Field(default=5, ge=2, description="cross-validation folds")
    level: float = Field(default=0.95, gt=0.0, lt=1.0, description="level of the AUC interval")


def _gate_switch(value: object) -> object:
    """``true`` is the default gate, ``false`` (or null) skips it."""
    if value is True:
        return BlindBaselineSettings()
    return None if value is False else value


class SuppliedTexts(BaseModel):
    """User-supplied member and non-member texts for the blind baseline (``.txt``: one
    text per line; ``.jsonl``: the text under ``text_field``)."""

    model_config = ConfigDict(extra="forbid")

    members: Path = Field(description="member texts, .txt or .jsonl")
    nonmembers: Path = Field(description="non-member texts, .txt or .jsonl")
    text_field: str = Field(default="text", description="jsonl: the field holding the text")

    @field_validator("members", "nonmembers")
    @classmethod
    def _text_file(cls, path: Path) -> Path:
        if path.suffix not in (".txt", ".jsonl"):
            raise ValueError(f"{path} must be a .txt or .jsonl file")
        if not path.is_file():
            raise ValueError(f"{path} is not a file")
        return path


class TextCanaryConfig(BaseModel):
    """Secret-sharer canaries (Carlini et al. 2019) added to the pool: ``per_repetition``
    canaries inserted each number of times in ``repetitions``, each one group (IN for half
    of the LMs); the format's defaults are :class:`SecretFormat`'s (6 random digits)."""

    model_config = ConfigDict(extra="forbid")

    repetitions: list[int] = Field(default_factory=lambda: [1, 4, 16], min_length=1)
    per_repetition: int = Field(default=8, ge=1, description="canaries per repetition count")
    seed: int = Field(default=0, ge=0, description="draws the secrets")
    template: str = SecretFormat.model_fields["template"].default
    alphabet: str = SecretFormat.model_fields["alphabet"].default
    length: int = Field(default=SecretFormat.model_fields["length"].default, ge=1)
    candidates: int = Field(
        default=DEFAULT_SAMPLE,
        ge=100,
        description="candidate secrets sampled for the extrapolated exposure (Sec. 4.3)",
    )

    @field_validator("repetitions")
    @classmethod
    def _distinct(cls, counts: list[int]) -> list[int]:
        if min(counts) < 1 or len(set(counts)) != len(counts):
            raise ValueError(f"repetitions must be distinct counts of at least 1, got {counts}")
        return sorted(counts)

    @property
    def secret_format(self) -> SecretFormat:
        return SecretFormat(template=self.template, alphabet=self.alphabet, length=self.length)

    @property
    def copies(self) -> int:
        """Pool samples the canaries add."""
        return self.per_repetition * sum(self.repetitions)

    @model_validator(mode="after")
    def _format(self) -> TextCanaryConfig:
        self.secret_format  # noqa: B018  (a bad template or space raises here)
        return self


class TextAuditSettings(BaseModel):
    """Design, attacks and metrics of a text audit."""

    model_config = ConfigDict(extra="forbid")

    num_models: int = Field(
        default=8,
        ge=2,
        description="LMs trained on complementary halves of the pool's near-duplicate "
        "groups; each is attacked in turn with the others as references",
    )
    seed: int = Field(default=0, ge=0, description="controls splits, training and bootstrap")
    pool_size: int | None = Field(
        default=None, ge=2, description="pool samples, whole groups (default: 70% of the data)"
    )
    test_size: int | None = Field(
        default=None, ge=1, description="held-out test samples, whole groups (default: the rest)"
    )
    population_size: int | None = Field(
        default=None, ge=1, description="population samples for RMIA and ReCaLL, from the test set"
    )
    attacks: list[TextAttackSpec] = Field(
        default_factory=lambda: list(DEFAULT_TEXT_ATTACKS),
        description="text attack names, or mappings {name: ..., <parameter>: ...}",
    )
    fpr: list[float] = Field(default_factory=lambda: [0.1, 0.01, 0.001, 0.0001])
    bootstrap: int = Field(default=200, ge=0, description="bootstrap replicates (0: none)")
    batch_size: int = Field(default=16, ge=1, description="samples per batch when scoring")
    device: str = Field(default="cpu", description="torch device for training and scoring")
    canaries: TextCanaryConfig | None = Field(
        default=None, description="secret-sharer canaries added to the pool (default: none)"
    )
    cache_dir: Path | None = Field(
        default=None, description="model cache (default: $MIALENS_CACHE_DIR or ~/.cache/mialens)"
    )
    blind_baseline: Annotated[BlindBaselineSettings | None, BeforeValidator(_gate_switch)] = Field(
        default_factory=BlindBaselineSettings,
        description="the model-free distribution-shift gate, or false to skip it",
    )

    def build_attacks(self) -> list[TextAttack]:
        """Fresh text attacks of ``attacks``, in order."""
        return [build_text_attack(spec) for spec in self.attacks]

    @property
    def attack_names(self) -> list[str]:
        """The names of ``attacks``, in order."""
        return [a.name for a in self.build_attacks()]

    @field_validator("num_models")
    @classmethod
    def _even(cls, k: int) -> int:
        if k % 2:
            raise ValueError(f"must be even (LMs come in complementary pairs); got {k}")
        return k

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        return check_device(device)

    @field_validator("fpr")
    @classmethod
    def _rates(cls, rates: list[float]) -> list[float]:
        return check_fpr_levels(rates)

    @model_validator(mode="after")
    def _attacks_fit(self) -> TextAuditSettings:
        if not self.attacks:
            raise ValueError("list at least one text attack")
        built = self.build_attacks()  # a ConfigError names a bad spec
        names = [a.name for a in built]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"attacks listed twice: {dup}")
        for attack in built:
            if attack.needs.references != "none" and self.num_models < 4:
                raise ValueError(
                    f"attack {attack.name!r} needs num_models >= 4 (every sample must be IN "
                    "and OUT of at least one reference LM besides the target)"
                )
        return self


class TextAuditSpec(BaseModel):
    """A language-model audit: the text data, tokenizer, LM, training recipe, design."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetConfig
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: TextModel = Field(
        default_factory=TextModelConfig,
        description="the built-in transformer, or {hf: folder} to fine-tune a saved HF model",
    )
    train: LMTrainConfig = Field(default_factory=LMTrainConfig)
    audit: TextAuditSettings = Field(default_factory=TextAuditSettings)
    supplied_texts: SuppliedTexts | None = Field(
        default=None, description="member and non-member texts the blind baseline uses instead"
    )
    executor: ExecutorConfig = Field(
        default_factory=ExecutorConfig,
        description="where the LMs train: one task per LM (kind: ray spreads them)",
    )

    @model_validator(mode="after")
    def _executor_trains_one_lm_per_task(self) -> TextAuditSpec:
        executor = self.executor
        if executor.ensemble == "on" or executor.ensemble_size is not None:
            raise ValueError(
                "a text audit trains each LM as its own task (on one CPU thread a batched "
                "ensemble of LMs is no faster, see mialens.models.causal_lm."
                "train_causal_lm_ensemble): drop executor.ensemble and executor.ensemble_size"
            )
        check_executor_device(executor, self.audit.device)
        return self

    @model_validator(mode="after")
    def _supplied_need_the_gate(self) -> TextAuditSpec:
        if self.supplied_texts is not None and self.audit.blind_baseline is None:
            raise ValueError(
                "supplied_texts feed the blind baseline: drop audit.blind_baseline: false"
            )
        return self

    @model_validator(mode="after")
    def _tokenizer_of_the_model(self) -> TextAuditSpec:
        """A pretrained model reads its own tokenizer's ids: by default the one saved
        in its folder; bytes and learned BPEs are refused."""
        if not isinstance(self.model, HFModelConfig):
            return self
        if "tokenizer" not in self.model_fields_set:
            self.tokenizer = TokenizerConfig(kind="hf", path=self.model.hf)
        elif self.tokenizer.kind != "hf":
            raise ValueError(
                f"tokenizer.kind {self.tokenizer.kind} cannot feed model.hf: a pretrained model "
                "reads the ids of its own tokenizer; drop the tokenizer section (the model "
                "folder's tokenizer is used) or give {kind: hf, path: <its tokenizer folder>}"
            )
        return self

    @model_validator(mode="after")
    def _canaries_fit_the_context(self) -> TextAuditSpec:
        canaries = self.audit.canaries
        if canaries is None or self.tokenizer.kind != "bytes":
            return self  # a learned tokenizer's lengths are checked on the encoded pool
        fixed = len(canaries.template.replace(SECRET_SLOT, "").encode("utf-8"))
        widest = max(len(c.encode("utf-8")) for c in canaries.alphabet)
        needed = 1 + fixed + canaries.length * widest
        if needed > self.model.context:
            raise ValueError(
                f"a canary takes up to {needed} tokens with its start token, more than "
                f"model.context = {self.model.context}; shorten audit.canaries.template or "
                "raise model.context"
            )
        return self
