from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from aris.cli import app
from aris.errors import ArisError, ModelNotFoundError
from aris.models import REGISTRY, find_mmproj, local_models, not_found, pick_gguf_files, pull


def test_registry_has_the_releases_with_their_capabilities() -> None:
    assert REGISTRY["google/medgemma-1.5-4b-it"].vision
    assert not REGISTRY["google/medgemma-27b-text-it"].vision
    assert REGISTRY["google/medgemma-27b-text-it"].thinking
    gguf = REGISTRY["unsloth/medgemma-1.5-4b-it-GGUF"]
    assert gguf.engine == "llamacpp"
    assert "Q4_K_M" in gguf.quants
    assert gguf.base == "google/medgemma-1.5-4b-it"


def test_gguf_file_choice_takes_the_quant_and_the_f16_projector() -> None:
    files = [
        "README.md",
        "medgemma-1.5-4b-it-Q4_K_M.gguf",
        "medgemma-1.5-4b-it-Q8_0.gguf",
        "mmproj-BF16.gguf",
        "mmproj-F16.gguf",
        "mmproj-F32.gguf",
    ]
    assert pick_gguf_files(files, "Q4_K_M") == ("medgemma-1.5-4b-it-Q4_K_M.gguf", "mmproj-F16.gguf")
    assert pick_gguf_files(files, "q8_0")[0] == "medgemma-1.5-4b-it-Q8_0.gguf"
    with pytest.raises(ArisError, match=r"no Q2_K file.*Q4_K_M"):
        pick_gguf_files(files, "Q2_K")


def test_local_models_finds_gguf_files_and_folders(aris_home: Path) -> None:
    models = aris_home / "models"
    (models / "medgemma").mkdir(parents=True)
    (models / "medgemma" / "medgemma-Q4_K_M.gguf").write_bytes(b"GGUF")
    (models / "medgemma" / "mmproj-F16.gguf").write_bytes(b"GGUF")
    (models / "hf-folder").mkdir()
    (models / "hf-folder" / "config.json").write_text("{}")
    found = {m.id: m for m in local_models(models)}
    assert set(found) >= {"medgemma-Q4_K_M", "hf-folder"}
    assert "mmproj-F16" not in found
    assert find_mmproj(found["medgemma-Q4_K_M"].path).name == "mmproj-F16.gguf"


def test_missing_model_message_says_how_to_get_it() -> None:
    err = not_found("unsloth/medgemma-1.5-4b-it-GGUF")
    assert isinstance(err, ModelNotFoundError)
    assert "aris pull unsloth/medgemma-1.5-4b-it-GGUF --quant Q4_K_M" in str(err)
    assert "never downloads silently" in str(err)


def test_pull_offline_fails_with_a_clear_message(aris_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ArisError, match=r"unreachable or HF_HUB_OFFLINE|cannot download"):
        pull("google/medgemma-1.5-4b-it", aris_home / "models")
    result = CliRunner().invoke(app, ["pull", "google/medgemma-1.5-4b-it"])
    assert result.exit_code != 0
    assert not (aris_home / "models" / "google--medgemma-1.5-4b-it" / "config.json").exists()


def test_models_command_lists_releases() -> None:
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    assert "medgemma-1.5-4b-it" in result.output
    assert "Health AI Developer Foundations" in result.output
