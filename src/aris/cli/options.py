"""Engine options shared by every command that runs a model (one definition, one precedence rule)."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from aris.config import ArisSettings

EngineOpt = Annotated[
    str | None, typer.Option("--engine", help="transformers | llamacpp | openai (env ARIS_ENGINE).")
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="HF id, local folder, GGUF file, or served model name.")
]
MmprojOpt = Annotated[str | None, typer.Option("--mmproj", help="GGUF vision projector for llamacpp.")]
BaseUrlOpt = Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible server URL (…/v1).")]
ApiKeyOpt = Annotated[str | None, typer.Option("--api-key", help="Key for the server (env ARIS_API_KEY).")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda (transformers).")]
DtypeOpt = Annotated[
    str | None, typer.Option("--dtype", help="auto | bfloat16 | float32 (float16 is refused).")
]
QuantOpt = Annotated[str | None, typer.Option("--quantization", help="none | 4bit (NF4, CUDA).")]
AdapterOpt = Annotated[str | None, typer.Option("--adapter", help="LoRA adapter folder over the base model.")]
NCtxOpt = Annotated[int | None, typer.Option("--n-ctx", help="llama.cpp context (volumes need >= 32768).")]
MaxTokensOpt = Annotated[int | None, typer.Option("--max-new-tokens", help="Longest reply.")]


def settings_from(
    engine: str | None = None,
    model: str | None = None,
    mmproj: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    quantization: str | None = None,
    adapter: str | None = None,
    n_ctx: int | None = None,
    max_new_tokens: int | None = None,
) -> ArisSettings:
    """Flags win over ARIS_* environment variables, which win over the config file."""
    return ArisSettings.from_flags(
        engine=engine,
        model=model,
        mmproj=mmproj,
        base_url=base_url,
        api_key=api_key,
        device=device,
        dtype=dtype,
        quantization=quantization,
        adapter=adapter,
        n_ctx=n_ctx,
        max_new_tokens=max_new_tokens,
    )


ENGINE_FLAGS: dict[str, Any] = {
    "engine": EngineOpt,
    "model": ModelOpt,
    "mmproj": MmprojOpt,
    "base_url": BaseUrlOpt,
    "api_key": ApiKeyOpt,
    "device": DeviceOpt,
    "dtype": DtypeOpt,
    "quantization": QuantOpt,
    "adapter": AdapterOpt,
    "n_ctx": NCtxOpt,
    "max_new_tokens": MaxTokensOpt,
}

F = TypeVar("F", bound=Callable[..., Any])


def engine_options(fn: F) -> F:
    """Give a typer command every engine flag; the command receives ``settings: ArisSettings`` instead.

    One definition of the flags and of their precedence (flags > ARIS_* > config file) for all commands.
    """
    # Resolve postponed annotations in the command's own module, so typer sees real objects.
    hints = typing.get_type_hints(fn, include_extras=True)
    sig = inspect.signature(fn)
    own = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in sig.parameters.values()
        if p.name != "settings"
    ]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ann)
        for name, ann in ENGINE_FLAGS.items()
        if name not in sig.parameters
    ]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        flags = {name: kwargs.pop(name, None) for name in ENGINE_FLAGS if name not in sig.parameters}
        return fn(*args, settings=settings_from(**flags), **kwargs)

    wrapper.__signature__ = sig.replace(parameters=own + added)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {
        **{k: v for k, v in fn.__annotations__.items() if k != "settings"},
        **{p.name: p.annotation for p in added},
    }
    return wrapper  # type: ignore[return-value]
