"""LoRA / QLoRA fine-tuning on your own studies: ``train(config) -> adapter_dir``, ``merge(adapter, out)``."""

from __future__ import annotations

from aris.finetune.config import FinetuneConfig, resolve_config
from aris.finetune.merge import merge
from aris.finetune.train import train

__all__ = ["FinetuneConfig", "merge", "resolve_config", "train"]
