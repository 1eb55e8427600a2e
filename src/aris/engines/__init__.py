"""Engines by name. Heavy libraries load only when an engine is chosen."""

from __future__ import annotations

from aris.engines.base import Capabilities, Engine

ENGINES: dict[str, str] = {
    "transformers": "aris.engines.transformers:TransformersEngine",
    "llamacpp": "aris.engines.llamacpp:LlamaCppEngine",
    "openai": "aris.engines.openai_compat:OpenAIEngine",
    "fake": "aris.engines.fake:FakeEngine",
}

__all__ = ["ENGINES", "Capabilities", "Engine"]
