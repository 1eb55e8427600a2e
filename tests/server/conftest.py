"""Server tests run the real uvicorn server on a free localhost port (see aris.server.local), backed by
the real engines: llama.cpp with the Gemma 3 270M GGUF (text) and transformers with the tiny Gemma 3 VLM
(images). Each engine loads once per session; modules start their own servers over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aris.server.local import free_port, live_server

__all__ = ["free_port", "live_server"]


@pytest.fixture(scope="session", autouse=True)
def server_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An ARIS_HOME for servers built by module fixtures, which start before each test's own home."""
    home = tmp_path_factory.mktemp("server-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ARIS_HOME", str(home))
        mp.delenv("ARIS_DB_URL", raising=False)
        yield home


@pytest.fixture(scope="session")
def llama_engine(gguf_270m: Path) -> Iterator[Any]:
    from aris.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(str(gguf_270m), n_ctx=2048)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def vlm_engine(tiny_vlm: Path) -> Iterator[Any]:
    from aris.engines.transformers import TransformersEngine

    engine = TransformersEngine(str(tiny_vlm))
    yield engine
    engine.close()
