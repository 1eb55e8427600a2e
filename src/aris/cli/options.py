"""Flags derived from models: engine flags from :class:`~aris.config.ArisSettings`, task flags from each
task's ``Options``. One definition of each setting (its type, default and description) and one
precedence rule (flags > ``ARIS_*`` > config file) for every command.
"""

from __future__ import annotations

import functools
import inspect
import json
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import typer
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from aris.config import ArisSettings
from aris.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def parse_pair(text: str, flag: str = "--option") -> tuple[str, Any]:
    """``key=value`` with JSON values where they parse (true, 3, ["a"]), else the string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} takes KEY=VALUE, not {text!r}")
    try:
        return key.strip().replace("-", "_"), json.loads(value)
    except ValueError:
        return key.strip().replace("-", "_"), value


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The type inside ``X | None`` and whether None was allowed."""
    args = get_args(annotation)
    if get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else annotation), True
    return annotation, False


def _choices(tp: Any) -> str:
    return " | ".join(str(a) for a in get_args(tp)) if get_origin(tp) is Literal else ""


def flag_for(name: str, info: FieldInfo) -> tuple[Any, bool] | None:
    """A typer annotation for one model field, and whether its value is a comma list to split.

    Scalars, booleans, literals and lists of scalars become flags; anything richer (dicts, lists of
    records) stays reachable through ``-o KEY=JSON``.
    """
    tp, _ = _unwrap(info.annotation)
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if extra.get("cli") is False:
        return None
    decls = [f"--{name.replace('_', '-')}"]
    if isinstance(extra.get("short"), str):
        decls.append(str(extra["short"]))
    help_text = (info.description or "").strip()
    choices = _choices(tp)
    if choices:
        help_text = f"{help_text} [{choices}]".strip()
    if tp is bool:
        neg = f"--{name.replace('_', '-')}/--no-{name.replace('_', '-')}"
        return Annotated[bool | None, typer.Option(neg, help=help_text)], False
    if tp in (int, float):
        return Annotated[tp | None, typer.Option(*decls, help=help_text)], False
    if tp in (str, Path, SecretStr) or get_origin(tp) is Literal:
        return Annotated[str | None, typer.Option(*decls, help=help_text)], False
    if get_origin(tp) in (list, tuple) and all(a in (str, int, float) for a in get_args(tp) if a is not ...):
        return Annotated[
            str | None, typer.Option(*decls, help=f"{help_text} (comma-separated)".strip())
        ], True
    return None


def model_flags(model: type[BaseModel], skip: frozenset[str] = frozenset()) -> dict[str, tuple[Any, bool]]:
    out: dict[str, tuple[Any, bool]] = {}
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        flag = flag_for(name, info)
        if flag is not None:
            out[name] = flag
    return out


def split_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


ENGINE_FLAGS = model_flags(ArisSettings, skip=frozenset({"engine_args"}))
EngineArgOpt = Annotated[
    list[str] | None,
    typer.Option("--engine-arg", help="A setting a plugin engine reads, KEY=VALUE (repeat the flag)."),
]


def settings_from(**flags: Any) -> ArisSettings:
    """Flags win over ARIS_* environment variables, which win over the config file."""
    engine_args = dict(parse_pair(a, "--engine-arg") for a in flags.pop("engine_arg", None) or [])
    if engine_args:
        flags["engine_args"] = engine_args
    return ArisSettings.from_flags(**flags)


def with_flags(
    fn: F,
    flags: dict[str, Any],
    collect: Callable[[dict[str, Any]], dict[str, Any]],
    supplies: tuple[str, ...],
) -> F:
    """``fn`` as a typer command with extra keyword-only flags.

    The values of ``flags`` go through ``collect``, whose result fills ``fn``'s parameters named in
    ``supplies`` (which the command line then does not show).
    """
    hints = typing.get_type_hints(fn, include_extras=True)
    sig = inspect.signature(fn)
    own = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in sig.parameters.values()
        if p.name not in supplies
    ]
    taken = {p.name for p in own}
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ann)
        for name, ann in flags.items()
        if name not in taken
    ]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {p.name: kwargs.pop(p.name, None) for p in added}
        return fn(*args, **collect(values), **kwargs)

    wrapper.__signature__ = sig.replace(parameters=own + added)  # type: ignore[attr-defined]
    # Resolved objects, not strings: a second wrapper resolves them in another module.
    wrapper.__annotations__ = {
        **{p.name: p.annotation for p in own},
        **{p.name: p.annotation for p in added},
        "return": hints.get("return", None),
    }
    return wrapper  # type: ignore[return-value]


def engine_options(fn: F) -> F:
    """Give a typer command every engine flag; the command receives ``settings: ArisSettings`` instead."""
    own = set(inspect.signature(fn).parameters)
    flags = {name: ann for name, (ann, _) in ENGINE_FLAGS.items() if name not in own}
    flags["engine_arg"] = EngineArgOpt
    return with_flags(fn, flags, lambda values: {"settings": settings_from(**values)}, ("settings",))
