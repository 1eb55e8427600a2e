"""``aris finetune`` end to end: flags over the config file, the progress bar, the saved record."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from aris.cli import app
from aris.finetune.train import RECORD


def test_finetune_command_trains_with_flags_over_the_file(
    tmp_path: Path, class_folder: Path, tiny_vlm: Path
) -> None:
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(
        f"base: {tiny_vlm}\nlora_r: 8\nlearning_rate: 1.0e-3\nbatch_size: 2\ngrad_accum: 4\nlogging_steps: 1\n"
    )
    out = tmp_path / "adapter"
    args = [
        "finetune",
        str(class_folder),  # no verb: `train` is the default
        "--task",
        "classify",
        "--out",
        str(out),
        "--config",
        str(cfg),
        "--lora-r",
        "4",
        "--grad-accum",
        "1",
        "--max-steps",
        "2",
        "--val-fraction",
        "0",
        "--modules-to-save",
        "none",
        "--input-option",
        "pad_square=false",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert re.search(r"loss \d+\.\d{4}", result.output)  # the rich progress bar shows the logged loss
    assert f"adapter: {out}" in " ".join(result.output.split())

    record = json.loads((out / RECORD).read_text())
    c = record["config"]
    assert c["lora_r"] == 4  # flag over file
    assert c["grad_accum"] == 1  # flag over file
    assert c["learning_rate"] == 1e-3  # file over default
    assert c["batch_size"] == 2  # file over default
    assert c["lora_alpha"] == 16  # default
    assert c["gradient_checkpointing"] is True  # the recipe's default ran
    assert c["modules_to_save"] == []
    assert c["input_options"] == {"pad_square": False}
    assert record["result"]["global_step"] == 2
    assert record["dataset"]["validation"] == 0
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4


def test_bad_settings_are_reported_not_raised(tmp_path: Path, class_folder: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["finetune", str(class_folder), "--task", "classify", "--out", str(tmp_path), "--dtype", "float16"],
    )
    assert result.exit_code != 0
    assert "float16" in str(result.exception)
