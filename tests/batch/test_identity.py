"""Results never come from another model's cache: a fine-tune evaluated after its base model gets its own
job and its own answers, on the real transformers engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aris.config import ArisSettings
from aris.eval.harness import evaluate
from aris.store import Store


@pytest.fixture(scope="module")
def random_adapter(tmp_path_factory: pytest.TempPathFactory, tiny_vlm: Path) -> Path:
    """A LoRA over the tiny VLM's language model with random, non-zero weights (it moves the logits)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    out = tmp_path_factory.mktemp("adapter") / "ft"
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm, local_files_only=True, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"])
    lora.init_lora_weights = False
    torch.manual_seed(1)
    get_peft_model(model, lora).save_pretrained(out)
    return out


def _dataset(root: Path) -> Path:
    root.mkdir(parents=True)
    rows = [
        {"id": f"q{i}", "question": q, "options": ["aspirin", "heparin", "warfarin"], "answer": "B"}
        for i, q in enumerate(
            ["Which drug is an anticoagulant given by injection?", "Which acts on factor Xa?"]
        )
    ]
    path = root / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_base_then_adapter_gives_two_jobs_and_the_adapters_own_answers(
    tmp_path: Path, tiny_vlm: Path, random_adapter: Path
) -> None:
    ds = _dataset(tmp_path / "ds")
    common = {"engine": "transformers", "model": str(tiny_vlm), "device": "cpu", "max_new_tokens": 12}
    with Store.open() as store:
        base = evaluate(
            ds, "text-qa", ArisSettings(**common), out_dir=tmp_path / "base", store=store, n_boot=10
        )
        tuned = evaluate(
            ds,
            "text-qa",
            ArisSettings(**common, adapter=str(random_adapter)),
            out_dir=tmp_path / "tuned",
            store=store,
            n_boot=10,
        )
        assert base.run["job_id"] != tuned.run["job_id"]
        assert tuned.summary.reused_now == 0  # nothing served from the base model's results
        assert tuned.summary.done_now == 2
        base_rows = {r["question"]: r["result"]["raw"] for r in store.export(base.run["job_id"])}
        tuned_rows = {r["question"]: r["result"]["raw"] for r in store.export(tuned.run["job_id"])}
        assert base_rows.keys() == tuned_rows.keys()
        assert base_rows != tuned_rows  # the adapter's own answers
        job = store.get_job(tuned.run["job_id"])
        assert job.params["identity"]["adapter"] is not None
        # Running the fine-tune again resumes its own job and generates nothing new.
        again = evaluate(
            ds,
            "text-qa",
            ArisSettings(**common, adapter=str(random_adapter)),
            out_dir=tmp_path / "tuned2",
            store=store,
            n_boot=10,
        )
        assert again.run["job_id"] == tuned.run["job_id"]
        assert again.summary.done_now == 0
