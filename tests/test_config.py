from __future__ import annotations

from pathlib import Path

import pytest

from aris.config import ArisSettings
from aris.errors import ConfigError


def test_flags_win_over_environment_which_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        'engine = "llamacpp"\nmodel = "from-file.gguf"\nmmproj = "file-mmproj.gguf"\nn_ctx = 4096\n'
    )
    monkeypatch.setenv("ARIS_CONFIG", str(cfg))
    s = ArisSettings()
    assert (s.engine, s.model, s.mmproj, s.n_ctx) == ("llamacpp", "from-file.gguf", "file-mmproj.gguf", 4096)

    monkeypatch.setenv("ARIS_MODEL", "from-env.gguf")
    monkeypatch.setenv("ARIS_N_CTX", "32768")
    s = ArisSettings()
    assert (s.model, s.n_ctx, s.mmproj) == ("from-env.gguf", 32768, "file-mmproj.gguf")

    s = ArisSettings.from_flags(model="from-flag.gguf", n_ctx=None, engine=None)
    assert (s.engine, s.model, s.n_ctx) == ("llamacpp", "from-flag.gguf", 32768)


def test_bad_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="engine: unknown engine 'vllm'; choose one of transformers"):
        ArisSettings.from_flags(engine="vllm")
    with pytest.raises(ConfigError, match="n_ctx"):
        ArisSettings.from_flags(n_ctx=10)


def test_home_follows_aris_home(aris_home: Path) -> None:
    assert ArisSettings().home == aris_home
    assert ArisSettings().models_dir == aris_home / "models"
