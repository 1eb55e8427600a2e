"""LoRA / QLoRA fine-tuning with TRL's ``SFTTrainer``: ``train(config) -> adapter_dir``.

Google's MedGemma recipe (``config.py`` holds its numbers) on a base model found on this machine:
bf16 LoRA on CUDA, float32 LoRA on CPU (slow, for small models), QLoRA (4-bit NF4, double
quantization, bf16 compute) on CUDA only. The output folder ends up holding the adapter
(``adapter_config.json``, ``adapter_model.safetensors``), the processor, ``trainer_state.json``,
the checkpoints ``checkpoint-N`` that ``resume=True`` continues from, and ``aris-finetune.json``:
the resolved settings, library versions and the dataset digest.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aris.errors import ConfigError, EngineError
from aris.finetune.collator import Collator
from aris.finetune.config import FinetuneConfig
from aris.finetune.dataset import Example, Prompter, TrainingData, dataset_digest, load_examples, split

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

RECORD = "aris-finetune.json"
_VERSIONED = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes", "aris")


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device cuda was asked for but torch sees no CUDA GPU (a CPU build of torch, or no driver); "
            "use --device cpu (float32, small models only) or install the CUDA build of torch"
        )
    return device


def resolve_dtype(dtype: str, device: str, qlora: bool) -> torch.dtype:
    import torch

    if qlora or dtype == "bfloat16" or (dtype == "auto" and device == "cuda"):
        return torch.bfloat16
    return torch.float32


def qlora_quantization(device: str) -> Any:
    """Google's QLoRA base: 4-bit NF4, double quantization, bf16 compute and storage. CUDA only."""
    if device != "cuda":
        raise ConfigError(
            "QLoRA needs a CUDA GPU: bitsandbytes 4-bit training does not run usefully on CPU and none is in "
            "use here. Drop --qlora to train plain LoRA (float32 on CPU, small models only), or run on a GPU"
        )
    try:
        import bitsandbytes  # noqa: F401 - transformers needs it at load; fail here with the fix
    except ImportError:
        raise ConfigError(
            "QLoRA needs bitsandbytes, which is not installed: pip install 'aris[cuda]' (CUDA machines)"
        ) from None
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_quant_storage=torch.bfloat16,
    )


def last_checkpoint(out: Path) -> Path | None:
    """The newest ``checkpoint-N`` folder in ``out`` (highest N), or None."""
    if not out.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    found = get_last_checkpoint(str(out))
    return Path(found) if found else None


def read_record(out: Path) -> dict[str, Any] | None:
    path = Path(out) / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def _write_record(out: Path, record: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    tmp.replace(out / RECORD)


def _check_output(out: Path, resume: bool, digest: str) -> Path | None:
    """The checkpoint to resume from; refuses to overwrite a run or to resume on other data."""
    last = last_checkpoint(out)
    if resume:
        if last is None:
            raise ConfigError(f"{out}: no checkpoint-N folder to resume from; run without --resume to start")
        saved = read_record(out)
        if saved is not None and saved.get("dataset", {}).get("digest") != digest:
            raise ConfigError(
                f"{out}: the dataset changed since this run started (digest differs); resuming would mix "
                "two datasets. Start a new run in another --out"
            )
        return last
    if last is not None or (out / "adapter_config.json").exists():
        raise ConfigError(
            f"{out}: already holds a fine-tuning run; pass --resume to continue it or choose another --out"
        )
    return None


def _load_model(config: FinetuneConfig, device: str, dtype: torch.dtype, quant: Any) -> tuple[Any, Any, Path]:
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
    )

    from aris.engines.transformers import resolve_model

    folder = resolve_model(config.base)
    kwargs: dict[str, Any] = {
        "local_files_only": True,
        "dtype": dtype,
        "attn_implementation": config.attn_implementation,
    }
    if quant is not None:
        kwargs["quantization_config"] = quant
    if device == "cuda":
        kwargs["device_map"] = {"": 0}
    t0 = time.perf_counter()
    try:
        model_config = AutoConfig.from_pretrained(folder, local_files_only=True)
        if getattr(model_config, "vision_config", None) is not None:
            model = AutoModelForImageTextToText.from_pretrained(folder, **kwargs)
            processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        else:
            model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
            processor = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise EngineError(f"{config.base}: cannot load with transformers: {e}") from e
    logger.info(
        "base loaded on %s as %s in %.2fs",
        device,
        str(dtype).removeprefix("torch."),
        time.perf_counter() - t0,
    )
    return model, processor, folder


def _lora_config(config: FinetuneConfig, model: Any) -> Any:
    from peft import LoraConfig

    saved = list(config.modules_to_save)
    tied = bool(getattr(model.config, "tie_word_embeddings", False)) or bool(
        getattr(model.config.get_text_config(), "tie_word_embeddings", False)
    )
    kwargs: dict[str, Any] = {}
    if config.tie_embeddings and tied and "embed_tokens" in saved:
        # Gemma 3 ties lm_head to embed_tokens; PEFT then trains ONE shared copy, as the base shares
        # one matrix. Untied copies (what older PEFT gave the recipe) merge into a model with an extra
        # vocab x hidden lm_head and tie_word_embeddings false only in the top-level config, while
        # text_config still says true: a trap for converters and servers that read the latter.
        kwargs["ensure_weight_tying"] = True
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        modules_to_save=saved or None,
        bias="none",
        task_type="CAUSAL_LM",
        **kwargs,
    )


def checkpointing_kwargs(args_class: type, on: bool) -> dict[str, Any]:
    """Gradient checkpointing settings under the name this transformers uses (5.2x renamed
    gradient_checkpointing to activation_checkpointing; the old name is deprecated)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(args_class)}
    ckpt = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {ckpt: on, f"{ckpt}_kwargs": {"use_reentrant": False}}


def _training_args(config: FinetuneConfig, out: Path, device: str, dtype: torch.dtype, has_eval: bool) -> Any:
    import torch
    from trl import SFTConfig

    checkpointing = checkpointing_kwargs(SFTConfig, config.gradient_checkpointing)
    return SFTConfig(
        output_dir=str(out),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size or config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        **checkpointing,
        optim=config.optim,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        max_grad_norm=config.max_grad_norm,
        bf16=dtype == torch.bfloat16,
        use_cpu=device == "cpu",
        logging_steps=config.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=config.eval_steps,
        prediction_loss_only=True,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        disable_tqdm=True,
        # Rows are file paths and text; the collator reads, prompts and tokenizes them per batch.
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None,  # truncation would cut image soft tokens away from their pixels
        label_names=["labels"],
        dataloader_num_workers=config.num_workers,
        dataloader_pin_memory=device == "cuda",
    )


def log_callback(lines: Callable[[Any, dict[str, float]], list[str]]) -> Any:
    """A transformers callback that logs ``lines(state, logs)``: numbers only, never data."""
    from transformers import TrainerCallback

    class LogNumbers(TrainerCallback):  # type: ignore[misc]
        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any
        ) -> None:
            for line in lines(state, logs or {}):
                logger.info("%s", line)

    return LogNumbers()


def _loss_lines(state: Any, logs: dict[str, float]) -> list[str]:
    """Step, loss, eval loss, learning rate."""
    out = []
    if "loss" in logs:
        out.append(
            f"step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f} "
            f"lr {logs.get('learning_rate', 0.0):.3g}"
        )
    if "eval_loss" in logs:
        out.append(f"step {state.global_step} eval loss {logs['eval_loss']:.4f}")
    return out


def train(config: FinetuneConfig, *, resume: bool = False, callbacks: Sequence[Any] = ()) -> Path:
    """Fine-tune ``config.base`` on ``config.dataset``; returns the adapter folder (``config.out``).

    ``config.method == "grpo"`` runs RL tuning on the task's rewards instead
    (:func:`aris.finetune.grpo.train_grpo`).

    ``resume`` continues from the newest checkpoint in ``config.out`` at the same global step
    (optimizer, scheduler and data order restored). ``callbacks`` are transformers
    ``TrainerCallback`` objects (the CLI's progress bar).
    """
    if config.method == "grpo":
        from aris.finetune.grpo import train_grpo

        return train_grpo(config, resume=resume, callbacks=callbacks)
    out = Path(config.out).expanduser()
    # Settings first, so a wrong flag fails in a second, before data or weights load.
    device = resolve_device(config.device)
    quant = qlora_quantization(device) if config.qlora else None
    dtype = resolve_dtype(config.dtype, device, config.qlora)

    # An unknown task fails here, before the dataset is read.
    prompter = Prompter(config.task, kind=config.kind, input_options=config.input_options)
    data: TrainingData = load_examples(config.dataset, config.task, question=config.question)
    digest = dataset_digest(data)
    checkpoint = _check_output(out, resume, digest)
    train_ex, val_ex = split(data.examples, config.val_fraction, config.seed)
    prompter.turns(train_ex[0])  # a bad file or prompt fails now, naming the file, not mid-run
    logger.info("examples: %d train, %d validation", len(train_ex), len(val_ex))

    from datasets import Dataset
    from transformers import PrinterCallback, ProgressCallback
    from trl import SFTTrainer

    model, processor, folder = _load_model(config, device, dtype, quant)
    collator = Collator(
        processor,
        lambda row: (prompter.turns(Example.from_row(row)), row["answer"]),
        mask_prompt=config.mask_prompt,
        pixel_dtype=dtype,
    )
    trainer = SFTTrainer(
        model=model,
        args=_training_args(config, out, device, dtype, bool(val_ex)),
        train_dataset=Dataset.from_list([ex.to_row() for ex in train_ex]),
        eval_dataset=Dataset.from_list([ex.to_row() for ex in val_ex]) if val_ex else None,
        data_collator=collator,
        processing_class=processor,
        peft_config=_lora_config(config, model),
        callbacks=[log_callback(_loss_lines), *callbacks],
    )
    # The processor is written once, beside the final adapter: saving its 33 MB tokenizer into every
    # checkpoint costs seconds each and resuming does not need it.
    trainer.processing_class = None
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    peft_model: Any = trainer.model
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info("trainable parameters: %d of %d", trainable, total)

    record: dict[str, Any] = {
        "aris_finetune": 1,
        "config": config.model_dump(mode="json"),
        "base_folder": str(folder),
        "versions": library_versions(),
        "dataset": {
            "digest": digest,
            "examples": len(data.examples),
            "train": len(train_ex),
            "validation": len(val_ex),
            "classes": data.classes,
        },
        "prompt": {"task": config.task, "think": prompter.think},
        "hardware": {"device": device, "dtype": str(dtype).removeprefix("torch."), "qlora": config.qlora},
        "trainable_parameters": trainable,
        "complete": False,
    }
    _write_record(out, record)
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    trainer.save_model(str(out))  # the adapter, the folder engines load with --adapter
    processor.save_pretrained(str(out))  # so the folder is complete for merge and serving
    trainer.save_state()
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    record["complete"] = True
    record["result"] = {
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "eval_loss": evals[-1] if evals else None,
        "seconds": round(time.perf_counter() - t0, 2),
        "resumed_from_step": int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint else None,
    }
    _write_record(out, record)
    logger.info(
        "adapter written after %d steps in %.1fs", trainer.state.global_step, time.perf_counter() - t0
    )
    return out
