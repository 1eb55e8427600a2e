"""Settings: Google's recipe as defaults, flags > file > defaults, refusals that name the fix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aris.errors import ConfigError
from aris.finetune.config import FinetuneConfig, resolve_config
from aris.finetune.train import qlora_quantization, train


def test_defaults_are_googles_recipe(tmp_path: Path) -> None:
    c = FinetuneConfig(dataset=tmp_path, task="classify", out=tmp_path / "o")
    assert (c.lora_r, c.lora_alpha, c.lora_dropout) == (16, 16, 0.05)
    assert c.target_modules == "all-linear"
    assert c.modules_to_save == ["lm_head", "embed_tokens"]
    assert (c.learning_rate, c.lr_scheduler, c.warmup_ratio, c.max_grad_norm) == (2e-4, "linear", 0.03, 0.3)
    assert (c.batch_size, c.grad_accum, c.epochs) == (4, 4, 1.0)
    assert c.gradient_checkpointing is True
    assert c.attn_implementation == "eager"
    assert c.qlora is False
    assert c.mask_prompt is False


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_flags_win_over_the_file_which_wins_over_defaults(tmp_path: Path, suffix: str) -> None:
    file = tmp_path / f"ft{suffix}"
    if suffix == ".yaml":
        file.write_text(
            "dataset: data\ntask: classify\nout: run\nlora_r: 8\nlearning_rate: 1.0e-4\nmodules_to_save: none\n"
        )
    else:
        file.write_text(
            'dataset = "data"\ntask = "classify"\nout = "run"\nlora_r = 8\nlearning_rate = 1e-4\nmodules_to_save = []\n'
        )
    c = resolve_config(file, lora_r=4, task=None, epochs=None)
    assert c.lora_r == 4  # flag over file
    assert c.learning_rate == 1e-4  # file over default
    assert c.lora_alpha == 16  # default
    assert c.task == "classify"  # a None flag is 'not given'
    assert c.modules_to_save == []
    # relative paths in a file are relative to the file
    assert c.dataset == tmp_path / "data"
    assert c.out == tmp_path / "run"


def test_comma_lists_from_flags(tmp_path: Path) -> None:
    c = resolve_config(
        None,
        dataset=tmp_path,
        task="vqa",
        out=tmp_path,
        target_modules="q_proj, v_proj",
        modules_to_save="lm_head",
    )
    assert c.target_modules == ["q_proj", "v_proj"]
    assert c.modules_to_save == ["lm_head"]


def test_unknown_key_in_the_file_is_named(tmp_path: Path) -> None:
    file = tmp_path / "ft.toml"
    file.write_text('dataset = "d"\ntask = "classify"\nout = "o"\nlora_rank = 8\n')
    with pytest.raises(ConfigError, match=r"ft\.toml.*lora_rank"):
        resolve_config(file)


def test_missing_settings_say_where_to_give_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="task: missing"):
        resolve_config(None, dataset=tmp_path, out=tmp_path)


def test_fp16_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="float16"):
        resolve_config(None, dataset=tmp_path, task="classify", out=tmp_path, dtype="float16")


def test_qlora_without_cuda_fails_before_any_work(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    # the dataset does not even exist: the refusal must come first
    cfg = resolve_config(None, dataset=tmp_path / "nowhere", task="classify", out=tmp_path / "o", qlora=True)
    with pytest.raises(ConfigError, match="QLoRA needs a CUDA GPU"):
        train(cfg)
    cfg = resolve_config(
        None, dataset=tmp_path / "nowhere", task="classify", out=tmp_path / "o", device="cuda"
    )
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        train(cfg)


def test_qlora_without_bitsandbytes_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"bitsandbytes.*aris\[cuda\]"):
        qlora_quantization("cuda")
