"""A real LoRA run on the tiny VLM (CPU, float32): loss falls, eval loss is logged, a crash resumes
at the same step, the record is complete, and the adapter changes what the transformers engine says.

One run serves every test here: it is stopped by an exception at step 6 (after the checkpoint at
step 4), then resumed to step 8. To stay fast it trains a LoRA-only adapter
(``modules_to_save=[]``, the kind vLLM serves); the recipe's tied embedding copy is covered by the
merge tests.
"""

from __future__ import annotations

import json
import math
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from aris.errors import ConfigError
from aris.finetune.config import FinetuneConfig, resolve_config
from aris.finetune.dataset import dataset_digest, load_examples
from aris.finetune.train import RECORD, train
from aris.prompt import build_turns
from aris.types import GenerationParams, ImagePart, Message

STEPS, SAVE_EVERY, CRASH_AT = 8, 4, 6


class SimulatedCrash(RuntimeError):
    pass


class Crash(TrainerCallback):  # type: ignore[misc]
    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step == CRASH_AT:
            raise SimulatedCrash(f"crash at step {state.global_step}")


class Watch(TrainerCallback):  # type: ignore[misc]
    def __init__(self) -> None:
        self.begin_step: int | None = None
        self.steps: list[int] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.begin_step = state.global_step

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.steps.append(state.global_step)


def small_run(dataset: Path, out: Path, base: Path, **over: Any) -> FinetuneConfig:
    settings: dict[str, Any] = {
        "dataset": dataset,
        "task": "classify",
        "out": out,
        "base": str(base),
        "batch_size": 1,
        "grad_accum": 1,
        "learning_rate": 1e-2,
        "max_steps": STEPS,
        "logging_steps": 1,
        "eval_steps": SAVE_EVERY,
        "save_steps": SAVE_EVERY,
        "val_fraction": 0.25,
        "modules_to_save": [],
        "gradient_checkpointing": False,  # on in the CLI test; here it would only cost time
    }
    return resolve_config(None, **{**settings, **over})


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, class_folder: Path, tiny_vlm: Path) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("ft") / "adapter"
    cfg = small_run(class_folder, out, tiny_vlm)
    first = Watch()
    with pytest.raises(SimulatedCrash):
        train(cfg, callbacks=[first, Crash()])
    crashed = sorted(p.name for p in out.glob("checkpoint-*"))
    second = Watch()
    adapter = train(cfg, resume=True, callbacks=[second])
    state = json.loads((out / "trainer_state.json").read_text())
    return {"cfg": cfg, "out": adapter, "first": first, "second": second, "crashed": crashed, "state": state}


def test_training_loss_falls(run: dict[str, Any]) -> None:
    losses = [h["loss"] for h in run["state"]["log_history"] if "loss" in h]
    assert len(losses) == STEPS
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.2, losses


def test_eval_loss_on_the_validation_split(run: dict[str, Any]) -> None:
    evals = {h["step"]: h["eval_loss"] for h in run["state"]["log_history"] if "eval_loss" in h}
    assert sorted(evals) == [SAVE_EVERY, STEPS]
    assert all(math.isfinite(v) for v in evals.values())
    assert evals[STEPS] < evals[SAVE_EVERY]


def test_resume_continues_from_the_same_step(run: dict[str, Any]) -> None:
    assert run["first"].steps == list(range(1, CRASH_AT + 1))
    assert run["crashed"] == [f"checkpoint-{SAVE_EVERY}"]  # the crash left only the step-6 checkpoint
    assert run["second"].begin_step == SAVE_EVERY
    assert run["second"].steps == list(range(SAVE_EVERY + 1, STEPS + 1))
    assert run["state"]["global_step"] == STEPS
    # one loss per step, none repeated or missing across the crash
    assert [h["step"] for h in run["state"]["log_history"] if "loss" in h] == list(range(1, STEPS + 1))


def test_record_holds_the_resolved_config_versions_and_digest(
    run: dict[str, Any], class_folder: Path
) -> None:
    record = json.loads((run["out"] / RECORD).read_text())
    assert record["complete"] is True
    assert record["config"] == json.loads(run["cfg"].model_dump_json())
    assert record["config"]["learning_rate"] == 1e-2
    assert record["config"]["lora_r"] == 16
    for lib in ("torch", "transformers", "peft", "trl"):
        assert record["versions"][lib] == version(lib)
    assert record["versions"]["aris"] == version("aris")
    assert record["dataset"]["digest"] == dataset_digest(load_examples(class_folder, "classify"))
    assert (record["dataset"]["train"], record["dataset"]["validation"]) == (9, 3)
    assert record["result"]["global_step"] == STEPS
    assert record["result"]["resumed_from_step"] == SAVE_EVERY
    adapter_config = json.loads((run["out"] / "adapter_config.json").read_text())
    assert adapter_config["r"] == 16
    assert adapter_config["lora_alpha"] == 16


def test_adapter_changes_the_transformers_engine_output(
    run: dict[str, Any], tiny_vlm: Path, class_images: dict[str, list[Any]]
) -> None:
    from aris.engines.transformers import TransformersEngine

    turns = build_turns([Message.user(ImagePart(class_images["pathology"][0]), "What is this?")])
    params = GenerationParams(max_new_tokens=8)
    with TransformersEngine(str(tiny_vlm), device="cpu") as base:
        plain = "".join(base.stream(turns, params))
        base_ids = base.encode([turns])
        base_logits = base.model(**base_ids).logits[0, -1]
    with TransformersEngine(str(tiny_vlm), device="cpu", adapter=run["out"]) as tuned:
        assert tuned.adapter == str(run["out"])
        adapted = "".join(tuned.stream(turns, params))
        tuned_logits = tuned.model(**tuned.encode([turns])).logits[0, -1]
    assert (tuned_logits - base_logits).abs().max() > 1e-3
    assert adapted != plain


def test_a_finished_run_is_not_overwritten(run: dict[str, Any], class_folder: Path, tiny_vlm: Path) -> None:
    with pytest.raises(ConfigError, match="already holds a fine-tuning run"):
        train(small_run(class_folder, run["out"], tiny_vlm))


def test_resume_needs_a_checkpoint(tmp_path: Path, class_folder: Path, tiny_vlm: Path) -> None:
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(small_run(class_folder, tmp_path / "new", tiny_vlm), resume=True)
