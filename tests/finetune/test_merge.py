"""``aris finetune merge``: the merged model computes what base + adapter computes.

The adapter has the recipe's full shape (all-linear LoRA, embed_tokens/lm_head trained copy kept
tied) with random non-zero weights, so every part of it moves the logits; it is built here with
PEFT from the same LoraConfig training uses, which is quicker than training one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
from typer.testing import CliRunner

from aris.cli import app
from aris.finetune.collator import training_text
from aris.finetune.config import FinetuneConfig
from aris.finetune.train import _lora_config
from aris.prompt import build_turns
from aris.types import GenerationParams, ImagePart, Message


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory, tiny_vlm: Path, class_folder: Path) -> Path:
    from peft import get_peft_model

    out = tmp_path_factory.mktemp("merge") / "adapter"
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm, local_files_only=True, dtype=torch.float32)
    lora = _lora_config(FinetuneConfig(dataset=class_folder, task="classify", out=out), model)
    lora.init_lora_weights = False  # random A and B: the adapter is not a no-op
    peft_model = get_peft_model(model, lora)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.05)  # the trained embedding copy moves too
    peft_model.save_pretrained(out)
    AutoProcessor.from_pretrained(tiny_vlm, local_files_only=True).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def merged(adapter: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("merged") / "model"
    result = CliRunner().invoke(app, ["finetune", "merge", str(adapter), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _inputs(processor: Any, image: Image.Image) -> Any:
    turns = build_turns([Message.user(ImagePart(image), "Which class?")])
    text = training_text(turns, '{"answer": "ct_slice"}')
    return processor(text=[text], images=[[image]], add_special_tokens=False, return_tensors="pt")


def test_merged_logits_equal_base_plus_adapter(
    adapter: Path, merged: Path, tiny_vlm: Path, class_images: dict[str, list[Image.Image]]
) -> None:
    from peft import PeftModel

    processor = AutoProcessor.from_pretrained(merged, local_files_only=True)
    batch = _inputs(processor, class_images["ct_slice"][1])
    base = AutoModelForImageTextToText.from_pretrained(
        tiny_vlm, local_files_only=True, dtype=torch.float32
    ).eval()
    base_emb = base.get_input_embeddings().weight.detach().clone()  # PeftModel wraps base in place
    with torch.no_grad():
        base_logits = base(**batch).logits
        lora_model = PeftModel.from_pretrained(base, str(adapter)).eval()
        lora_logits = lora_model(**batch).logits
    plain = AutoModelForImageTextToText.from_pretrained(
        merged, local_files_only=True, dtype=torch.float32
    ).eval()
    with torch.no_grad():
        merged_logits = plain(**batch).logits
    assert (lora_logits - base_logits).abs().max() > 1e-2  # the adapter does something
    torch.testing.assert_close(merged_logits, lora_logits, atol=1e-4, rtol=1e-4)
    # the trained embedding copy is both the input embedding and the output head
    emb = plain.get_input_embeddings().weight
    assert torch.equal(emb, plain.get_output_embeddings().weight)
    assert not torch.equal(emb, base_emb)


def test_merged_folder_is_a_plain_model_for_the_engine(
    adapter: Path, merged: Path, tiny_vlm: Path, class_images: dict[str, list[Image.Image]]
) -> None:
    from aris.engines.transformers import TransformersEngine

    assert not (merged / "adapter_config.json").exists()
    record = json.loads((merged / "aris-merge.json").read_text())
    assert record["base"] == str(tiny_vlm)
    turns = build_turns([Message.user(ImagePart(class_images["pathology"][2]), "What is this?")])
    params = GenerationParams(max_new_tokens=6)
    with TransformersEngine(str(merged), device="cpu") as eng:
        from_merged = "".join(eng.stream(turns, params))
    with TransformersEngine(str(tiny_vlm), device="cpu", adapter=adapter) as eng:
        from_adapter = "".join(eng.stream(turns, params))
    assert from_merged == from_adapter


def test_merge_refuses_a_non_empty_folder(adapter: Path, merged: Path) -> None:
    result = CliRunner().invoke(app, ["finetune", "merge", str(adapter), "--out", str(merged)])
    assert result.exit_code != 0
    assert "not empty" in str(result.exception) + result.output


def test_merge_needs_an_adapter_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["finetune", "merge", str(tmp_path), "--out", str(tmp_path / "m")])
    assert result.exit_code != 0
    assert "adapter_config.json" in str(result.exception) + result.output
