"""Engines by name: one registration each, everything else derived from the class's declarations.

Heavy libraries load only when an engine is chosen. A third-party engine registers through the
``aris.engines`` entry-point group (``name = "package.module:EngineClass"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aris.engines.base import Capabilities, Engine
from aris.registry import Registry

if TYPE_CHECKING:
    from aris.config import ArisSettings

ENGINES: Registry[type[Engine]] = Registry("engine")
ENGINES.register("transformers", "aris.engines.transformers:TransformersEngine")
ENGINES.register("llamacpp", "aris.engines.llamacpp:LlamaCppEngine")
ENGINES.register("openai", "aris.engines.openai_compat:OpenAIEngine")
ENGINES.register("fake", "aris.engines.fake:FakeEngine")


def engine_class(name: str) -> type[Engine]:
    return ENGINES.get(name)


def load_engine(settings: ArisSettings) -> Engine:
    """The one engine factory: the CLI, server, batch and eval all build engines here."""
    return engine_class(settings.engine).from_settings(settings)


def run_settings(settings: ArisSettings) -> dict[str, object]:
    """The settings that choose and change this run's engine, as recorded with a batch or eval job.

    Never the key: a job record may be shared.
    """
    used = ("engine", *engine_class(settings.engine).settings_used)
    data = settings.model_dump(mode="json")
    return {k: data[k] for k in used if data.get(k) is not None}


__all__ = ["ENGINES", "Capabilities", "Engine", "engine_class", "load_engine", "run_settings"]
