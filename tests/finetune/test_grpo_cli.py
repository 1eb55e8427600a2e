"""``aris finetune --method grpo`` end to end: from an SFT adapter, with the report's prompts, the
progress bar showing reward and KL, then ``aris eval`` on the held-out items with the base model,
the SFT adapter and the GRPO adapter, and ``aris eval compare`` of the three."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from aris.cli import app
from aris.finetune.config import resolve_config
from aris.finetune.dataset import load_examples, split
from aris.finetune.train import RECORD, train
from tests.finetune.conftest import write_class_folder


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def test_grpo_from_sft_then_eval_compares_base_sft_and_grpo(
    tmp_path: Path, class_images: dict[str, list[Any]], tiny_vlm: Path
) -> None:
    data = write_class_folder(tmp_path / "data", {k: v[:2] for k, v in class_images.items()})
    sft = tmp_path / "sft"
    train(
        resolve_config(
            None,
            dataset=data,
            task="classify",
            out=sft,
            base=str(tiny_vlm),
            max_steps=1,
            batch_size=1,
            grad_accum=1,
            val_fraction=0.5,
            modules_to_save=[],
            gradient_checkpointing=False,
        )
    )
    cfg = tmp_path / "grpo.yaml"
    cfg.write_text(
        f"method: grpo\nbase: {tiny_vlm}\nnum_generations: 2\nbatch_size: 4\nrewards:\n  format: 0.25\n"
    )
    out = tmp_path / "grpo"
    r = invoke(
        "finetune", data, "--task", "classify", "--out", out, "--config", cfg,
        "--from-sft", sft, "--prompts", "report", "--batch-size", "2", "--grad-accum", "1",
        "--max-steps", "1", "--max-completion-length", "2", "--beta", "0.04", "--reward", "format=0.5",
        "--val-fraction", "0.5",
    )  # fmt: skip
    assert r.exit_code == 0, r.output + repr(r.exception)
    text = " ".join(r.output.split())
    assert re.search(r"reward \d\.\d{3} ± \d\.\d{3} kl -?\d\.\d{4}", text)  # the bar: reward and KL
    assert f"adapter: {out}" in text
    assert f"aris eval {out / 'heldout.jsonl'} --task classify --prompts report" in text

    record = json.loads((out / RECORD).read_text())
    assert record["config"]["batch_size"] == 2  # flag over file
    assert record["config"]["num_generations"] == 2  # file over default
    assert record["config"]["learning_rate"] == 5e-6  # Google's RL notebook's default
    assert record["config"]["rewards"] == {"correct": 1.0, "format": 0.5}  # flag over file over default
    assert record["config"]["gradient_checkpointing"] is True
    assert record["from_sft"]["path"] == str(sft)
    assert record["from_sft"]["lora_r"] == 16  # the SFT adapter's rank, not GRPO's default 64
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 16
    assert not (out / "ref").exists()  # TRL's frozen KL reference is not part of the adapter
    assert record["result"]["global_step"] == 1
    held = out / "heldout.jsonl"
    held_inputs = {json.loads(line)["input"] for line in held.read_text().splitlines()}
    assert len(held_inputs) == record["dataset"]["validation"] == 3
    # the SFT run held out the very same items: neither adapter trained on what eval scores below
    _, sft_val = split(load_examples(data, "classify").examples, 0.5, 42)
    assert held_inputs == {str(Path(ex.inputs[0]).resolve()) for ex in sft_val}

    common = [
        "eval", held, "--task", "classify", "--prompts", "report", "--engine", "transformers",
        "--model", tiny_vlm, "--device", "cpu", "--max-new-tokens", "4", "--bootstrap", "0",
    ]  # fmt: skip
    for name, adapter in (("base", None), ("sft", sft), ("grpo", out)):
        extra = ["--adapter", adapter] if adapter else []
        r = invoke(*common, *extra, "--out", tmp_path / f"eval-{name}")
        assert r.exit_code == 0, r.output + repr(r.exception)
        run = json.loads((tmp_path / f"eval-{name}" / "run.json").read_text())
        assert run["counts"]["items"] == 3
        assert run["settings"].get("adapter") == (str(adapter) if adapter else None)

    r = invoke(
        "eval", "compare", tmp_path / "eval-base", tmp_path / "eval-sft", tmp_path / "eval-grpo",
        "--out", tmp_path / "cmp.json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output + repr(r.exception)
    shown = " ".join(r.output.split())
    assert "C − A" in shown
    cmp = json.loads((tmp_path / "cmp.json").read_text())
    assert [run["label"] for run in cmp["runs"]] == [
        "tiny-gemma3-vlm",
        "tiny-gemma3-vlm + sft",
        "tiny-gemma3-vlm + grpo",
    ]
    assert len(cmp["metrics"]["accuracy"]["values"]) == 3
    assert len(cmp["metrics"]["accuracy"]["deltas"]) == 2
