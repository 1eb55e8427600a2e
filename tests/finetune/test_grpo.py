"""A real GRPO run on the tiny VLM (CPU, float32): a learnable reward rises in the run's own log, a
crash resumes at the same step, the record is complete, and the adapter changes what the
transformers engine says.

The toy task is ``classify`` on one training image with a reward for one exact token: 1.0 when the
reply starts with the token the base model already likes most after the prompt. The tiny model's
weights are noise, so its replies never parse; this reward is the one it can learn in a few steps.
The sampling temperature is chosen so that the token starts at a probability of one half, which
gives the groups of four the spread of rewards GRPO learns from. One run serves every test here:
it is stopped by an exception at step 3 (after the checkpoint at step 2), then resumed to step 4.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback

from aris.errors import ConfigError
from aris.eval.protocol import make_protocol
from aris.finetune.config import GrpoConfig, resolve_config
from aris.finetune.dataset import dataset_digest, load_examples
from aris.finetune.grpo import (
    HELDOUT,
    RlData,
    aris_processing,
    inference_turns,
    load_items,
    split_items,
    trl_prompt,
)
from aris.finetune.train import RECORD, train
from aris.prompt import prompt_hash, render
from aris.tasks import get_task
from tests.finetune.conftest import write_class_folder

STEPS, SAVE_EVERY, CRASH_AT = 4, 2, 3
REWARD = "grpo_toy_reward:first_token"


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


def train_prompt(cfg: GrpoConfig) -> Any:
    """The turns of the (one) training item, built as the run builds them."""
    items, classes = load_items(cfg)
    protocol = make_protocol(cfg.task, items, cfg.dataset, None, prompts="app")
    data = RlData(get_task(cfg.task), items, protocol, cfg)
    train_idx, _ = split_items(items, classes, cfg.val_fraction, cfg.seed)
    assert len(train_idx) == 1
    return data.get(train_idx[0]).turns


def first_token_logits(model: str, turns: Any, adapter: Path | None = None) -> torch.Tensor:
    """The engine's next-token logits after the prompt (what the first sampled token is drawn from)."""
    from aris.engines.transformers import TransformersEngine

    with TransformersEngine(model, device="cpu", adapter=adapter) as engine, torch.no_grad():
        return engine.model(**engine.encode([turns])).logits[0, -1].float()


def temperature_for(logits: torch.Tensor, token: int, p: float) -> float:
    """The sampling temperature at which the model's favourite ``token`` has probability ``p``
    (bisection: its probability falls as the temperature rises)."""
    lo, hi = 1e-4, 1.0
    for _ in range(40):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if torch.softmax(logits / mid, -1)[token] > p else (lo, mid)
    return lo


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, class_images: dict[str, list[Any]], tiny_vlm: Path
) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("grpo")
    dataset = write_class_folder(
        root / "data",
        {"chest_xray": class_images["chest_xray"][:1], "pathology": class_images["pathology"][:1]},
    )
    out = root / "adapter"
    settings: dict[str, Any] = {
        "method": "grpo",
        "dataset": dataset,
        "task": "classify",
        "out": out,
        "base": str(tiny_vlm),
        "val_fraction": 0.5,  # one image trains, the other is held out
        "batch_size": 4,
        "grad_accum": 1,
        "num_generations": 4,  # one prompt, four replies per step
        "max_completion_length": 2,
        "max_steps": STEPS,
        "save_steps": SAVE_EVERY,
        "learning_rate": 1e-3,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "gradient_checkpointing": False,  # on in the CLI test; here it would only cost time
    }
    turns = train_prompt(resolve_config(None, **settings))  # type: ignore[arg-type]
    logits = first_token_logits(str(tiny_vlm), turns)
    target = int(logits.argmax())
    temperature = temperature_for(logits, target, 0.5)
    module = root / "mods"
    module.mkdir()
    (module / "grpo_toy_reward.py").write_text(
        "def first_token(completions, completion_ids, **kwargs):\n"
        f"    return [1.0 if ids and ids[0] == {target} else 0.0 for ids in completion_ids]\n"
    )
    sys.path.insert(0, str(module))
    try:
        cfg = resolve_config(
            None, **settings, temperature=temperature, rewards={"correct": 0.0, "format": 0.0, REWARD: 1.0}
        )
        first = Watch()
        with pytest.raises(SimulatedCrash):
            train(cfg, callbacks=[first, Crash()])
        crashed = sorted(p.name for p in out.glob("checkpoint-*"))
        second = Watch()
        adapter = train(cfg, resume=True, callbacks=[second])
    finally:
        sys.path.remove(str(module))
    state = json.loads((out / "trainer_state.json").read_text())
    return {
        "cfg": cfg,
        "out": adapter,
        "first": first,
        "second": second,
        "crashed": crashed,
        "state": state,
        "turns": turns,
        "target": target,
        "temperature": temperature,
        "dataset": dataset,
        "base_logits": logits,
    }


def test_the_reward_rises_in_the_runs_own_log(run: dict[str, Any]) -> None:
    logged = [h for h in run["state"]["log_history"] if "reward" in h]
    assert [h["step"] for h in logged] == list(range(1, STEPS + 1))
    rewards = [h["reward"] for h in logged]
    assert rewards[0] < 1.0, rewards  # the token is not yet the model's every first choice
    assert min(rewards[-2:]) > rewards[0], rewards
    assert sum(rewards[-2:]) / 2 >= 0.75, rewards
    for h in logged:  # per reward function: the weighted one is the total; the others are logged at weight 0
        assert h[f"rewards/{REWARD}/mean"] == pytest.approx(h["reward"])
        assert h["rewards/format/mean"] == 0.0  # the tiny model's replies never parse
        assert h["rewards/correct/mean"] == 0.0
        assert "reward_std" in h
    record = json.loads((run["out"] / RECORD).read_text())
    assert record["result"]["reward_first"] == rewards[0]
    assert record["result"]["reward_last"] == rewards[-1]


def test_resume_continues_from_the_same_step(run: dict[str, Any]) -> None:
    assert run["first"].steps == list(range(1, CRASH_AT + 1))
    assert run["crashed"] == [f"checkpoint-{SAVE_EVERY}"]
    assert run["second"].begin_step == SAVE_EVERY
    assert run["second"].steps == list(range(SAVE_EVERY + 1, STEPS + 1))
    assert run["state"]["global_step"] == STEPS
    assert [h["step"] for h in run["state"]["log_history"] if "reward" in h] == list(range(1, STEPS + 1))


def test_record_holds_the_resolved_config_rewards_and_digest(run: dict[str, Any]) -> None:
    record = json.loads((run["out"] / RECORD).read_text())
    assert record["complete"] is True
    assert record["method"] == "grpo"
    assert record["config"] == json.loads(run["cfg"].model_dump_json())
    assert record["config"]["num_generations"] == 4
    assert record["config"]["beta"] == 0.0  # TRL's default, as Google's notebook leaves it
    assert record["grpo"]["rewards"] == {"correct": 0.0, "format": 0.0, REWARD: 1.0}
    assert record["grpo"]["max_completion_length"] == 2
    assert record["grpo"]["protocol"]["task"] == "classify"
    assert record["prompt"] == {"task": "classify", "think": False, "prompts": "app", "mode": None}
    assert record["dataset"]["digest"] == dataset_digest(load_examples(run["dataset"], "classify"))
    assert (record["dataset"]["train"], record["dataset"]["validation"]) == (1, 1)
    assert record["result"]["global_step"] == STEPS
    assert record["result"]["resumed_from_step"] == SAVE_EVERY
    assert json.loads((run["out"] / "adapter_config.json").read_text())["r"] == 8
    held = [json.loads(line) for line in (run["out"] / HELDOUT).read_text().splitlines()]
    assert len(held) == 1
    assert held[0]["answer"] in ("chest_xray", "pathology")
    assert held[0]["choices"] == ["chest_xray", "pathology"]
    assert Path(held[0]["input"]).is_file()


def test_the_adapter_changes_the_engines_output(run: dict[str, Any], tiny_vlm: Path) -> None:
    base = run["base_logits"]
    tuned = first_token_logits(str(tiny_vlm), run["turns"], adapter=run["out"])
    assert (tuned - base).abs().max() > 1e-3
    t, target = run["temperature"], run["target"]
    # the rewarded token became likelier, through the engine that serves the adapter
    assert torch.softmax(tuned / t, -1)[target] > torch.softmax(base / t, -1)[target] + 0.2


def test_a_finished_run_is_not_overwritten_and_bad_groups_fail_early(run: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="already holds a fine-tuning run"):
        train(run["cfg"])
    bad = run["cfg"].model_copy(update={"batch_size": 3})
    with pytest.raises(ConfigError, match="multiple of num_generations"):
        train(bad)
    many = run["cfg"].model_copy(update={"batch_size": 8})  # two prompts a step, one training item
    with pytest.raises(ConfigError, match="1 training items"):
        train(many)


def test_the_prompt_is_the_one_inference_sends(class_folder: Path, tiny_vlm: Path, fake_engine: Any) -> None:
    from aris.engines.transformers import TransformersEngine
    from aris.runner import prepare_inputs, run_task

    image = next(class_folder.glob("ct_slice/*.png"))
    options = {"choices": ["chest_xray", "ct_slice", "pathology"]}
    inputs = prepare_inputs("classify", [image])
    turns = inference_turns(get_task("classify"), inputs, None, dict(options))
    fake_engine.enqueue('{"answer": "ct_slice"}')
    result = run_task("classify", [image], models=fake_engine, options=options)
    assert prompt_hash(turns) == result.prompt_sha256  # the very prompt `aris run` sends

    # TRL's side: the prompt, through Aris's processor shim, gives the ids the engine encodes
    messages, images = trl_prompt(turns)
    filled = [{**m, "content": [dict(c) for c in m["content"]]} for m in messages]
    queue = list(images)
    for m in filled:
        for c in m["content"]:
            if c["type"] == "image":
                c["image"] = queue.pop(0)
    with TransformersEngine(str(tiny_vlm), device="cpu") as engine:
        want = engine.encode([turns])
        shim = aris_processing(engine.processor)
    assert shim.apply_chat_template(filled, tokenize=False) == render(turns)
    got = shim.apply_chat_template([filled], tokenize=True, return_dict=True, return_tensors="pt")
    assert got["input_ids"].tolist() == want["input_ids"].tolist()
    assert torch.equal(got["pixel_values"], want["pixel_values"])


def test_grpo_defaults_are_googles_rl_recipe_and_trls(tmp_path: Path) -> None:
    import dataclasses

    from trl import GRPOConfig as TrlGRPOConfig

    from aris.finetune.config import GRPO_DEFAULT_SOURCES
    from aris.finetune.grpo import completion_length

    c = resolve_config(None, method="grpo", dataset=tmp_path, task="text-qa", out=tmp_path / "o")
    assert isinstance(c, GrpoConfig)
    # Google's MedGemma RL notebook
    assert (c.lora_r, c.lora_alpha, c.target_modules, c.modules_to_save) == (64, 64, "all-linear", [])
    assert (c.learning_rate, c.batch_size, c.grad_accum, c.num_generations) == (5e-6, 3, 4, 4)
    assert (c.gradient_checkpointing, c.attn_implementation) == (True, "eager")
    assert c.rewards == {"correct": 1.0, "format": 0.0}
    # TRL's own defaults, where the notebook keeps them
    trl = {f.name: f.default for f in dataclasses.fields(TrlGRPOConfig)}
    assert (c.beta, c.temperature, c.top_p, c.top_k) == (
        trl["beta"],
        trl["temperature"],
        trl["top_p"],
        trl["top_k"],
    )
    assert c.max_grad_norm == trl["max_grad_norm"]
    assert completion_length(c, get_task("text-qa"), think=True) == 1024  # the notebook's, thinking on
    assert completion_length(c, get_task("classify"), think=False) == get_task("classify").max_new_tokens
    assert set(GRPO_DEFAULT_SOURCES) <= set(GrpoConfig.model_fields)


def test_reward_weights_merge_and_sft_refuses_grpo_settings(tmp_path: Path) -> None:
    file = tmp_path / "rl.toml"
    file.write_text('method = "grpo"\n[rewards]\nformat = 0.25\n"pkg.mod:fn" = 0.5\n')
    c = resolve_config(file, dataset=tmp_path, task="classify", out=tmp_path / "o", rewards={"format": 0.5})
    assert c.rewards == {"correct": 1.0, "format": 0.5, "pkg.mod:fn": 0.5}
    with pytest.raises(ConfigError, match="beta: a GRPO setting"):
        resolve_config(None, dataset=tmp_path, task="classify", out=tmp_path / "o", beta=0.1)
    with pytest.raises(ConfigError, match="unknown reward 'accuracy'"):
        resolve_config(
            None, method="grpo", dataset=tmp_path, task="classify", out=tmp_path, rewards={"accuracy": 1}
        )
    with pytest.raises(ConfigError, match="nothing to learn from"):
        resolve_config(
            None, method="grpo", dataset=tmp_path, task="classify", out=tmp_path, rewards={"correct": 0}
        )
