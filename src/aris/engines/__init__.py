"""Engines by name. Heavy libraries load only when an engine is chosen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aris.engines.base import Capabilities, Engine
from aris.errors import ConfigError
from aris.registry import resolve

if TYPE_CHECKING:
    from aris.config import ArisSettings

ENGINES: dict[str, str] = {
    "transformers": "aris.engines.transformers:TransformersEngine",
    "llamacpp": "aris.engines.llamacpp:LlamaCppEngine",
    "openai": "aris.engines.openai_compat:OpenAIEngine",
    "fake": "aris.engines.fake:FakeEngine",
}


def load_engine(settings: ArisSettings) -> Engine:
    """The one engine factory: the CLI, server, batch and eval all build engines here."""
    if settings.engine in ("transformers", "llamacpp") and not settings.model:
        raise ConfigError(
            "no model: pass --model (HF id or local folder; for llamacpp a .gguf file plus --mmproj for images) "
            "or set ARIS_MODEL"
        )
    if settings.engine == "openai" and not settings.base_url:
        raise ConfigError("no server: pass --base-url http://HOST:PORT/v1 or set ARIS_BASE_URL")
    cls = resolve(ENGINES, settings.engine, "engine")
    if settings.engine == "transformers":
        return cls(  # type: ignore[no-any-return]
            settings.model,
            device=settings.device,
            dtype=settings.dtype,
            quantization=settings.quantization,
            adapter=settings.adapter,
        )
    if settings.engine == "llamacpp":
        return cls(  # type: ignore[no-any-return]
            settings.model, mmproj=settings.mmproj, n_ctx=settings.n_ctx, n_threads=settings.n_threads
        )
    if settings.engine == "openai":
        return cls(  # type: ignore[no-any-return]
            settings.base_url,
            settings.model,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
        )
    return cls(settings.model or "fake")  # type: ignore[no-any-return]


__all__ = ["ENGINES", "Capabilities", "Engine", "load_engine"]
