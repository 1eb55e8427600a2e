"""LoRA / QLoRA fine-tuning on your own studies: ``train(config) -> adapter_dir``, ``merge(adapter, out)``.

``method="grpo"`` (:class:`GrpoConfig`) is RL tuning on the task's own rewards (:mod:`aris.finetune.grpo`).
"""

from __future__ import annotations

from aris.finetune.config import FinetuneConfig, GrpoConfig, resolve_config
from aris.finetune.merge import merge
from aris.finetune.train import train

__all__ = ["FinetuneConfig", "GrpoConfig", "merge", "resolve_config", "train"]
