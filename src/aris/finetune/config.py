"""The fine-tuning settings: Google's MedGemma QLoRA recipe as defaults, every one overridable.

Precedence is flags > config file (YAML or TOML, keys are the field names) > these defaults;
:func:`resolve_config` applies it and the resolved model is what gets saved beside the adapter.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aris.errors import ConfigError

DEFAULT_BASE = "google/medgemma-1.5-4b-it"


class FinetuneConfig(BaseModel):
    """Everything a run depends on. Field descriptions double as ``--help`` text."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # -- data -----------------------------------------------------------------------------------
    dataset: Path = Field(
        description="A folder of class folders, a .csv/.jsonl (input, question, answer), or a saved HF dataset."
    )
    task: str = Field(
        description="The task whose prompt the examples are put in (classify, vqa, cxr-report...)."
    )
    out: Path = Field(description="Where the adapter, checkpoints and aris-finetune.json go.")
    base: str = Field(
        default=DEFAULT_BASE, description="Base model: HF id already on this machine, or a folder."
    )
    kind: str = Field(default="auto", description="Input kind for the reader: auto|cxr|image|ct|mri|wsi|pdf.")
    input_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Reader options as inference takes them (pad_square, magnification...).",
    )
    question: str | None = Field(
        default=None, description="Question for class-folder examples (task default if unset)."
    )
    val_fraction: float = Field(default=0.1, ge=0.0, lt=1.0, description="Share held out for eval loss.")
    seed: int = Field(default=42, description="Seed for the split, adapter init and data order.")
    mask_prompt: bool = Field(
        default=False,
        description="Learn only the answer (labels -100 up to it). Google's collator learns the prompt too.",
    )

    # -- LoRA / QLoRA ---------------------------------------------------------------------------
    qlora: bool = Field(default=False, description="4-bit NF4 base (double quant, bf16 compute); needs CUDA.")
    lora_r: int = Field(default=16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(default=16, ge=1, description="LoRA alpha.")
    lora_dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="LoRA dropout.")
    target_modules: str | list[str] = Field(
        default="all-linear", description="'all-linear' (text and SigLIP linears) or module names."
    )
    modules_to_save: list[str] = Field(
        default_factory=lambda: ["lm_head", "embed_tokens"],
        description="Fully trained modules stored in the adapter (vLLM refuses adapters that have any).",
    )
    tie_embeddings: bool = Field(
        default=True,
        description="Train one copy shared by lm_head and embed_tokens (Gemma 3 ties them); the merge stays standard.",
    )

    # -- optimisation ---------------------------------------------------------------------------
    learning_rate: float = Field(default=2e-4, gt=0, description="Peak learning rate.")
    lr_scheduler: str = Field(default="linear", description="transformers scheduler name.")
    warmup_ratio: float = Field(default=0.03, ge=0.0, lt=1.0, description="Warm-up share of the steps.")
    max_grad_norm: float = Field(default=0.3, gt=0, description="Gradient clipping.")
    batch_size: int = Field(default=4, ge=1, description="Per-device training batch.")
    grad_accum: int = Field(default=4, ge=1, description="Gradient accumulation steps.")
    epochs: float = Field(default=1.0, gt=0, description="Epochs (ignored when max_steps is set).")
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimizer steps.")
    gradient_checkpointing: bool = Field(default=True, description="Trade compute for memory.")
    attn_implementation: str = Field(default="eager", description="Gemma 3 trains with eager attention.")
    optim: str = Field(default="adamw_torch_fused", description="transformers optimizer name.")

    # -- hardware -------------------------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: CUDA when torch sees one."
    )
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        default="auto", description="auto: bf16 on CUDA, float32 on CPU (fp16 breaks Gemma 3)."
    )

    # -- bookkeeping ----------------------------------------------------------------------------
    logging_steps: int = Field(default=10, ge=1, description="Log the loss every N steps.")
    eval_steps: int = Field(default=50, ge=1, description="Eval loss on the validation split every N steps.")
    save_steps: int = Field(default=50, ge=1, description="Checkpoint every N steps (for --resume).")
    save_total_limit: int = Field(default=2, ge=1, description="Checkpoints kept.")
    eval_batch_size: int | None = Field(default=None, ge=1, description="Eval batch (default: batch_size).")
    num_workers: int = Field(default=0, ge=0, description="DataLoader workers preparing inputs.")

    @field_validator("dtype", mode="before")
    @classmethod
    def _refuse_fp16(cls, v: Any) -> Any:
        if str(v).lower() in ("float16", "fp16", "half"):
            raise ValueError("float16 breaks Gemma 3 (transformers issue 36822); use bfloat16 or float32")
        return v

    @field_validator("target_modules", mode="before")
    @classmethod
    def _split_targets(cls, v: Any) -> Any:
        if isinstance(v, str) and v != "all-linear" and "," in v:
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @field_validator("modules_to_save", mode="before")
    @classmethod
    def _split_saved(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [] if v.strip().lower() in ("", "none") else [s.strip() for s in v.split(",") if s.strip()]
        return v


def read_config_file(path: Path) -> dict[str, Any]:
    """Keys of a YAML or TOML file (field names); a bad file raises ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".toml":
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: cannot parse TOML: {e}") from e
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: cannot parse YAML: {e}") from e
    else:
        raise ConfigError(f"{path}: a fine-tuning config is a .yaml, .yml or .toml file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of setting names to values")
    if isinstance(data.get("finetune"), dict) and len(data) == 1:
        data = data["finetune"]  # a [finetune] table / finetune: section is accepted too
    # Relative paths in a file are relative to the file, as a reader of the file expects.
    for key in ("dataset", "out"):
        if isinstance(data.get(key), str) and not Path(data[key]).expanduser().is_absolute():
            data[key] = str(path.parent / data[key])
    return dict(data)


def resolve_config(file: Path | None = None, **flags: Any) -> FinetuneConfig:
    """Defaults, then the file, then the flags; a flag of ``None`` means 'not given'."""
    data: dict[str, Any] = read_config_file(file) if file is not None else {}
    data.update({k: v for k, v in flags.items() if v is not None})
    try:
        return FinetuneConfig(**data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or 'config'}: "
            + (
                "missing (pass it as a flag or set it in the config file)"
                if err["type"] == "missing"
                else err["msg"]
            )
            for err in e.errors()
        )
        where = f"{file}: " if file is not None else ""
        raise ConfigError(f"{where}invalid fine-tuning settings: {problems}") from None
