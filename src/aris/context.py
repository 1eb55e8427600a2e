"""What a task run may use besides its inputs: the models by role, where files go, a cancel signal.

The runner (:mod:`aris.runner`) builds one :class:`RunContext` per run; tasks read it, never build it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aris.errors import ConfigError
from aris.registry import Registry

if TYPE_CHECKING:
    from aris.config import ArisSettings
    from aris.engines.base import Engine

# Model roles: "generator" is MedGemma (or any Gemma 3) behind an Engine; other roles are the rest of
# the family. Each loader takes ArisSettings and returns an object with ``close()`` and ``identity()``.
MODEL_ROLES: Registry[Any] = Registry("model role")
MODEL_ROLES.register("generator", "aris.engines:load_engine")
MODEL_ROLES.register("embedder", "aris.embed:load_embedder")
MODEL_ROLES.register("transcriber", "aris.speech:load_transcriber")


class Cancelled(Exception):
    """The caller stopped the run (client gone, job cancelled)."""


class Models:
    """The models a run may need, by role: given ones are used as they are, others load on first use.

    ``close()`` closes only what this object loaded, so a server can hand in its long-lived engine.
    """

    def __init__(self, settings: ArisSettings | None = None, **given: Any) -> None:
        unknown = set(given) - set(MODEL_ROLES.names())
        if unknown:
            raise ConfigError(f"unknown model role(s) {', '.join(sorted(unknown))}")
        self._settings = settings
        self._given = {k: v for k, v in given.items() if v is not None}
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def settings(self) -> ArisSettings:
        if self._settings is None:
            from aris.config import ArisSettings

            self._settings = ArisSettings.from_flags()
        return self._settings

    def has(self, role: str) -> bool:
        return role in self._given or role in self._loaded

    def get(self, role: str) -> Any:
        if role in self._given:
            return self._given[role]
        with self._lock:
            if role not in self._loaded:
                loader = MODEL_ROLES.get(role)
                self._loaded[role] = loader(self.settings)
            return self._loaded[role]

    @property
    def generator(self) -> Engine:
        engine: Engine = self.get("generator")
        return engine

    def identity(self, roles: tuple[str, ...]) -> dict[str, Any]:
        """What identifies the models of these roles, for result keys (see ``Engine.identity``)."""
        return {role: self.get(role).identity() for role in roles}

    def close(self) -> None:
        with self._lock:
            loaded, self._loaded = self._loaded, {}
        for model in loaded.values():
            model.close()

    def __enter__(self) -> Models:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class RunContext:
    """Per-run facilities a task may use."""

    models: Models = field(default_factory=Models)
    # Where tasks that write files (overlays, boxes) put them. Chosen by the front end (the CLI's --out,
    # the server's job folder); never by a client. Results name the files relative to it.
    files_dir: Path | None = None
    cancel: threading.Event | None = None
    # A front end that can talk to a person (the CLI's terminal) answers a task's questions here;
    # None from it ends the conversation. Tasks that converse (intake) use it when no script is given.
    ask: Callable[[str], str | None] | None = None
    # Task events beyond the answer stream (an intake's escalation): {"type": ..., ...}.
    on_event: Callable[[dict[str, Any]], None] | None = None

    def check_cancelled(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled
