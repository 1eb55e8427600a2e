"""One registry style for everything Aris can be extended with: engines, readers, sources, tasks,
model roles and eval protocols.

Each registry maps a name to a target. Built-ins are declared once, as ``"module:attr"`` strings, so
choosing one entry never imports the others (torch is not imported to list the tasks). Third-party
packages add entries through Python entry points, the way ``llm`` plugins do::

    [project.entry-points."aris.tasks"]
    my-task = "my_package.tasks:MyTask"

Everything else (CLI choices and flags, config validation, the server's task list, MCP's tool schema)
is derived from these registries, so adding an entry is one file plus one registration.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from aris.errors import ConfigError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Entry-point groups, one per extension point.
GROUPS = {
    "engine": "aris.engines",
    "reader": "aris.readers",
    "source": "aris.sources",
    "task": "aris.tasks",
    "model role": "aris.models",
    "eval protocol": "aris.protocols",
}


def load_target(target: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Names to lazily imported targets; plugins join from the entry-point group on first listing.

    A built-in name wins over a plugin of the same name (a plugin cannot silently replace a recipe).
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.group = GROUPS[what]
        self._targets: dict[str, str | T] = {}
        self._loaded: dict[str, T] = {}
        self._origin: dict[str, str] = {}
        self._plugins_read = False

    def register(self, name: str, target: str | T, *, origin: str = "aris") -> None:
        """Declare ``name``; ``target`` is an object or a ``"module:attr"`` string imported on first use."""
        if name in self._targets and self._origin.get(name) == "aris" and origin != "aris":
            logger.warning("%s plugin %s ignored: a built-in has that name", self.what, name)
            return
        self._targets[name] = target
        self._origin[name] = origin
        self._loaded.pop(name, None)

    def _read_plugins(self) -> None:
        if self._plugins_read:
            return
        self._plugins_read = True
        for ep in entry_points(group=self.group):
            dist = ep.dist.name if ep.dist is not None else "plugin"
            self.register(ep.name, ep.value, origin=dist)

    def names(self) -> list[str]:
        self._read_plugins()
        return list(self._targets)

    def origin(self, name: str) -> str:
        """``"aris"`` for a built-in, else the distribution that registered it."""
        self.get(name)
        return self._origin[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def get(self, name: str) -> T:
        """The target for ``name``; ``ConfigError`` listing what is available when unknown."""
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._targets:
            self._read_plugins()
        if name not in self._targets:
            raise ConfigError(f"Unknown {self.what} {name!r}. Available: {', '.join(sorted(self.names()))}")
        target = self._targets[name]
        try:
            value: T = load_target(target) if isinstance(target, str) else target
        except (ImportError, AttributeError) as e:
            raise ConfigError(
                f"{self.what} {name!r} ({self._origin[name]}) could not be loaded: {type(e).__name__}: {e}"
            ) from e
        self._loaded[name] = value
        return value

    def items(self) -> list[tuple[str, T]]:
        return [(n, self.get(n)) for n in self.names()]
