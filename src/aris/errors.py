"""Error types. Each names what the user can act on: the file, the setting, the fix."""

from __future__ import annotations

from pathlib import Path


class ArisError(Exception):
    """Base of every error Aris raises on purpose."""


class ConfigError(ArisError):
    """A setting is missing or contradicts another."""


class InputError(ArisError):
    """A file cannot become a model input. The message starts with the file's path.

    Paths belong in exceptions shown to the local user, never in log lines or HTTP bodies,
    so ``public_message`` drops the path.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    @property
    def public_message(self) -> str:
        return self.problem


class EngineError(ArisError):
    """An engine failed to load or to generate."""


class ModelNotFoundError(EngineError):
    """The requested weights are not on this machine. The message says how to get them."""


class ProjectorMissingError(EngineError):
    """An image was sent to a GGUF model loaded without its mmproj vision projector."""


class UnsupportedDtypeError(EngineError):
    """A dtype that breaks Gemma 3 (fp16) was requested."""


class BudgetError(ArisError):
    """A request does not fit the engine's context or image limit."""


class PromptError(ArisError):
    """A conversation cannot be put into Gemma 3's chat format."""


class OutputError(ArisError):
    """A model reply could not be parsed or validated."""
