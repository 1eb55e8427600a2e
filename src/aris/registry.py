"""Lazy ``"module:Class"`` registries, so choosing one entry never imports the others."""

from __future__ import annotations

import importlib
from typing import Any

from aris.errors import ConfigError


def resolve(registry: dict[str, str], name: str, what: str) -> Any:
    try:
        target = registry[name]
    except KeyError:
        raise ConfigError(f"Unknown {what} {name!r}. Available: {', '.join(sorted(registry))}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
