"""The zero-shot and probe tasks through the one task path (aris.runner.run_task and `aris run`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from aris.errors import ConfigError
from aris.runner import run_task


def test_zero_shot_through_run_task(embed_env: Path, embedder, samples) -> None:  # type: ignore[no-untyped-def]
    from aris.embed.zeroshot import score
    from aris.inputs import read

    path = samples("dicom/cxr/RG1_UNCR.dcm")
    result = run_task(
        "zero-shot", path, options={"labels": ["pleural effusion", "no finding", "cardiomegaly"]}
    )
    p = result.parsed
    assert result.task == "zero-shot"
    assert result.engine == "transformers"
    assert result.notice.startswith("Preliminary")
    assert set(p["sigmoid"]) == set(p["softmax"]) == {"pleural effusion", "no finding", "cardiomegaly"}
    assert sum(p["softmax"].values()) == pytest.approx(1.0, abs=1e-5)
    # independent of the task: the same numbers from the embedder and the score formula
    ref = score(
        embedder.embed_images(read(path).images)[0],
        embedder.embed_texts(p["labels"]),
        p["labels"],
        *embedder.score_params(),
    )
    assert [p["sigmoid"][lab] for lab in p["labels"]] == pytest.approx(ref.sigmoid.tolist(), abs=1e-6)
    assert p["top"] == p["labels"][int(np.argmax(ref.softmax))]
    assert p["top"] in result.text


def test_zero_shot_label_set_on_a_ct_keeps_per_slice_scores(embed_env: Path, samples) -> None:  # type: ignore[no-untyped-def]
    result = run_task(
        "zero-shot", samples("dicom/ct_series/cardiac_ct5n_5slices"), options={"label_set": "cxr"}
    )
    p = result.parsed
    assert len(p["labels"]) == 14
    assert p["templates"] == ["a chest X-ray showing {label}", "chest radiograph with {label}"]
    assert p["parts"] == 5
    assert [r["part"] for r in p["per_part"]] == ["SLICE 1", "SLICE 2", "SLICE 3", "SLICE 4", "SLICE 5"]


def test_zero_shot_options_fail_loudly(embed_env: Path, samples) -> None:  # type: ignore[no-untyped-def]
    path = samples("dicom/cxr/RG1_UNCR.dcm")
    with pytest.raises(ConfigError, match="at least two labels"):
        run_task("zero-shot", path, options={"labels": ["effusion"]})
    with pytest.raises(ConfigError, match="not both"):
        run_task("zero-shot", path, options={"labels": ["a", "b"], "label_set": "cxr"})
    with pytest.raises(ConfigError, match="placeholder"):
        run_task("zero-shot", path, options={"labels": ["a", "b"], "templates": ["no placeholder"]})
    with pytest.raises(ConfigError, match="unknown label set"):
        run_task("zero-shot", path, options={"label_set": "nope"})


def test_own_label_sets_from_the_config_file(embed_env: Path, samples, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "config.toml"
    cfg.write_text('[embed_label_sets]\nwrist = ["no fracture", "distal radius fracture"]\n')
    monkeypatch.setenv("ARIS_CONFIG", str(cfg))
    result = run_task("zero-shot", samples("dicom/cxr/RG1_UNCR.dcm"), options={"label_set": "wrist"})
    assert result.parsed["labels"] == ["no fracture", "distal radius fracture"]


def test_cli_zero_shot_probe_and_index(embed_env: Path, class_folder: Path, samples) -> None:  # type: ignore[no-untyped-def]
    from aris.cli import app

    runner = CliRunner()
    img = str(class_folder / "pathology" / "01.png")
    r = runner.invoke(app, ["zero-shot", img, "-l", "adipose", "-l", "mucus", "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert set(rec["parsed"]["softmax"]) == {"adipose", "mucus"}

    r = runner.invoke(app, ["probe", "train", str(class_folder), "--name", "tissue", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["metrics"]["accuracy"] == 1.0
    r = runner.invoke(app, ["run", "probe", img, "--probe", "tissue", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["parsed"]["prediction"] == "pathology"
    r = runner.invoke(app, ["probe", "eval", "tissue", str(class_folder), "--json"])
    assert json.loads(r.stdout)["metrics"]["balanced_accuracy"] == 1.0

    r = runner.invoke(app, ["index", "add", str(class_folder)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["index", "search", "--image", img, "-k", "2", "--json"])
    best = json.loads(r.stdout)["results"][0]
    assert best["display"] == "dataset/pathology/01.png"
    assert runner.invoke(app, ["index", "delete", str(best["id"])]).exit_code == 0
    r = runner.invoke(app, ["index", "search", "--image", img, "-k", "20", "--json"])
    assert best["id"] not in [h["id"] for h in json.loads(r.stdout)["results"]]
    r = runner.invoke(app, ["embed", img, "--json"])
    assert json.loads(r.stdout)["inputs"][0]["from_store"] is True  # embedded by the steps above
