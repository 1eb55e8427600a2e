"""The fine-tuning settings: Google's MedGemma QLoRA recipe as defaults, every one overridable.

Precedence is flags > config file (YAML or TOML, keys are the field names) > these defaults;
:func:`resolve_config` applies it and the resolved model is what gets saved beside the adapter.
``method: grpo`` selects :class:`GrpoConfig`: the same fields with the defaults of Google's MedGemma
RL notebook, plus the GRPO ones (group size, KL coefficient, rewards...).
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aris.errors import ConfigError

DEFAULT_BASE = "google/medgemma-1.5-4b-it"


class FinetuneConfig(BaseModel):
    """Everything a run depends on. Field descriptions double as ``--help`` text."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    method: Literal["sft", "grpo"] = Field(
        default="sft",
        description="sft: learn the answers (TRL SFTTrainer); grpo: RL on the task's own scores (TRL GRPOTrainer).",
    )

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


# Where each GRPO default comes from. Google's notebook is MedGemma's RL tutorial
# (``reinforcement_learning_with_hugging_face.ipynb``: TRL GRPOTrainer on MedQA); "TRL" is
# ``trl.GRPOConfig``'s own default in the installed TRL (1.16).
GRPO_DEFAULT_SOURCES: dict[str, str] = {
    "lora_r": "Google's notebook (LoRA r=64)",
    "lora_alpha": "Google's notebook (alpha=64)",
    "target_modules": "Google's notebook (all-linear)",
    "modules_to_save": "Google's notebook (none: a LoRA-only adapter)",
    "learning_rate": "Google's notebook (5e-6)",
    "batch_size": "Google's notebook (per-device batch 3; in GRPO it counts completions)",
    "grad_accum": "Google's notebook (accumulation 4)",
    "num_generations": "Google's notebook (group size 4; TRL's default is 8)",
    "max_completion_length": "Google's notebook (1024) when the task thinks, else the task's own max_new_tokens",
    "beta": "TRL's default (0.0: no KL term, no reference model); Google's notebook leaves it",
    "temperature": "TRL's default (1.0)",
    "warmup_ratio": "TRL's default (0)",
    "max_grad_norm": "TRL's default (1.0)",
    "gradient_checkpointing": "Google's notebook (on)",
    "attn_implementation": "Google's notebook (eager)",
    "think": "the task's own (text-qa thinks, as Google's notebook and the report do; image tasks do not)",
    "rewards": "Google's notebook (one reward: 1.0 for a correct answer); format logged at weight 0",
    "logging_steps": "Aris (every step: the reward is what to watch)",
}
BUILTIN_REWARDS = ("correct", "format")
DEFAULT_REWARDS: dict[str, float] = {"correct": 1.0, "format": 0.0}


class GrpoConfig(FinetuneConfig):
    """GRPO (RL with verifiable rewards): Google's MedGemma RL recipe as defaults.

    Rewards are the task's own scores (:mod:`aris.finetune.rewards`): ``correct`` is the eval
    protocol's per-item score against the reference (accuracy, yes/no, IoU, field F1, ROUGE-L),
    ``format`` is 1.0 when the task's parser accepts the reply; ``module:function`` adds your own.
    """

    method: Literal["sft", "grpo"] = Field(default="grpo", description="grpo (this config) or sft.")
    lora_r: int = Field(default=64, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(default=64, ge=1, description="LoRA alpha.")
    modules_to_save: list[str] = Field(
        default_factory=list,
        description="Fully trained modules stored in the adapter (none: a LoRA-only adapter, as Google's RL notebook).",
    )
    learning_rate: float = Field(default=5e-6, gt=0, description="Peak learning rate.")
    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0, description="Warm-up share of the steps.")
    max_grad_norm: float = Field(default=1.0, gt=0, description="Gradient clipping.")
    batch_size: int = Field(
        default=3,
        ge=1,
        description="Per-device batch, in completions (GRPO counts completions, not prompts).",
    )
    logging_steps: int = Field(default=1, ge=1, description="Log rewards, KL and loss every N steps.")

    # -- GRPO -----------------------------------------------------------------------------------
    num_generations: int = Field(
        default=4,
        ge=2,
        description="Group size: completions sampled per prompt, scored against each other.",
    )
    max_completion_length: int | None = Field(
        default=None,
        ge=1,
        description="Token budget of a sampled reply (default: 1024 when the task thinks, else the task's own).",
    )
    beta: float = Field(
        default=0.0, ge=0.0, description="KL coefficient against the start policy (0: no KL)."
    )
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature of the completions.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling of the completions.")
    top_k: int = Field(default=0, ge=0, description="Top-k sampling of the completions (0: off).")
    think: bool | None = Field(
        default=None, description="Thinking on/off while sampling (default: the task's own)."
    )
    prompts: Literal["app", "report"] = Field(
        default="app",
        description="app: the prompts `aris run` serves with; report: the technical report's (what `aris eval` uses).",
    )
    mode: str | None = Field(
        default=None, description="The eval protocol's mode (vqa: open|yes-no; ct: ct-us1|ct-rate...)."
    )
    rewards: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_REWARDS),
        description="Reward weights: correct, format, or module:function for your own; weight 0 logs only.",
    )
    from_sft: Path | None = Field(
        default=None, description="An SFT adapter folder to start from (trained further, not merged)."
    )

    @field_validator("rewards")
    @classmethod
    def _known_rewards(cls, v: dict[str, float]) -> dict[str, float]:
        for name in v:
            if name not in BUILTIN_REWARDS and ":" not in name:
                raise ValueError(
                    f"unknown reward {name!r}: use {', '.join(BUILTIN_REWARDS)} or module:function"
                )
        if not all(math.isfinite(w) for w in v.values()):
            raise ValueError("reward weights must be finite numbers")
        if not any(w != 0 for w in v.values()):
            raise ValueError("every reward weight is 0: nothing to learn from")
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
    for key in ("dataset", "out", "from_sft"):
        if isinstance(data.get(key), str) and not Path(data[key]).expanduser().is_absolute():
            data[key] = str(path.parent / data[key])
    return dict(data)


def resolve_config(file: Path | None = None, **flags: Any) -> FinetuneConfig:
    """Defaults, then the file, then the flags; a flag of ``None`` means 'not given'.

    ``method: grpo`` (file or flag) resolves to a :class:`GrpoConfig`. Reward weights merge: the
    file's and then the flag's change the weights they name and keep the others (``correct=1``,
    ``format=0`` by default), so ``correct=0`` is how to train on other rewards alone.
    """
    data: dict[str, Any] = read_config_file(file) if file is not None else {}
    given = {k: v for k, v in flags.items() if v is not None}
    weights = [d["rewards"] for d in (data, given) if isinstance(d.get("rewards"), dict)]
    data.update(given)
    if weights:
        data["rewards"] = {k: v for w in (DEFAULT_REWARDS, *weights) for k, v in w.items()}
    cls = GrpoConfig if data.get("method") == "grpo" else FinetuneConfig
    try:
        return cls(**data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or 'config'}: " + _problem(err) for err in e.errors()
        )
        where = f"{file}: " if file is not None else ""
        raise ConfigError(f"{where}invalid fine-tuning settings: {problems}") from None


def _problem(err: Any) -> str:
    if err["type"] == "missing":
        return "missing (pass it as a flag or set it in the config file)"
    if err["type"] == "extra_forbidden" and err["loc"] and err["loc"][0] in GrpoConfig.model_fields:
        return "a GRPO setting: it applies with method grpo (--method grpo)"
    return str(err["msg"])
