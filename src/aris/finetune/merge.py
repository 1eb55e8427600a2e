"""Fold a LoRA adapter into its base: a plain model folder any engine or converter can load.

The base is loaded unquantized (a QLoRA adapter is merged into the bf16 weights, as Google's
notebook does: merging into 4-bit weights would round the update away) and PEFT's
``merge_and_unload`` adds each ``B @ A * alpha / r`` to its weight and swaps in the trained
``modules_to_save`` copies. The processor (tokenizer, image processor, chat template) is saved
beside it, so the folder is complete for transformers, and for llama.cpp's ``convert_hf_to_gguf.py``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from aris.errors import ConfigError, EngineError

logger = logging.getLogger(__name__)

MERGE_RECORD = "aris-merge.json"
_PROCESSOR_FILES = (
    "processor_config.json",
    "preprocessor_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
)


def _adapter_folder(adapter: Path) -> Path:
    adapter = Path(adapter).expanduser()
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(
            f"{adapter}: no adapter_config.json; pass the folder `aris finetune` wrote "
            "(adapter_config.json and adapter_model.safetensors)"
        )
    return adapter


def base_of(adapter: Path) -> str:
    """The base model the adapter was trained on: from aris-finetune.json, else PEFT's config."""
    from aris.finetune.train import read_record

    record = read_record(adapter)
    if record and record.get("base_folder") and Path(record["base_folder"]).is_dir():
        return str(record["base_folder"])
    if record and record.get("config", {}).get("base"):
        return str(record["config"]["base"])
    peft_config = json.loads((adapter / "adapter_config.json").read_text())
    base = peft_config.get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"{adapter}: the adapter does not name its base model; pass --base")
    return str(base)


def _merge_dtype(dtype: str, model_config: Any) -> Any:
    import torch

    if dtype == "bfloat16":
        return torch.bfloat16
    if dtype == "float32":
        return torch.float32
    if dtype != "auto":
        raise ConfigError(f"unknown dtype {dtype!r}; use auto, bfloat16 or float32 (float16 breaks Gemma 3)")
    stored = getattr(model_config, "dtype", None) or getattr(model_config, "torch_dtype", None)
    # Keep the base's own precision (MedGemma ships bf16); anything else is merged in float32.
    return torch.bfloat16 if str(stored).removeprefix("torch.") == "bfloat16" else torch.float32


def merge(adapter: Path, out: Path, *, base: str | None = None, dtype: str = "auto") -> Path:
    """Write base + adapter as one model into ``out`` (which must be new or empty); returns ``out``."""
    adapter = _adapter_folder(adapter)
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: not empty; merge into a new folder")
    from peft import PeftModel
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
    )

    from aris.engines.transformers import resolve_model
    from aris.finetune.train import library_versions, read_record

    base_name = base or base_of(adapter)
    folder = resolve_model(base_name)
    t0 = time.perf_counter()
    try:
        model_config = AutoConfig.from_pretrained(folder, local_files_only=True)
        vision = getattr(model_config, "vision_config", None) is not None
        cls = AutoModelForImageTextToText if vision else AutoModelForCausalLM
        base_model = cls.from_pretrained(
            folder, local_files_only=True, dtype=_merge_dtype(dtype, model_config)
        )
        model: Any = PeftModel.from_pretrained(base_model, str(adapter), is_trainable=False)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise EngineError(f"{adapter}: cannot load this adapter over {base_name}: {e}") from e
    merged = model.merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out))
    # The processor saved with the adapter is the one training used; fall back to the base's.
    source = adapter if any((adapter / f).exists() for f in _PROCESSOR_FILES) else folder
    loader = AutoProcessor if vision else AutoTokenizer
    loader.from_pretrained(str(source), local_files_only=True).save_pretrained(str(out))
    (out / MERGE_RECORD).write_text(
        json.dumps(
            {
                "adapter": str(adapter),
                "base": base_name,
                "versions": library_versions(),
                "finetune": read_record(adapter),
            },
            indent=2,
        )
        + "\n"
    )
    logger.info("merged adapter into base in %.2fs", time.perf_counter() - t0)
    return out
