"""The task interface: a recipe = input kinds + exact prompt + output schema + parser.

``Task.run(engine, inputs, ...)`` is the one way a task is executed, by the CLI (``aris run``),
the library (``aris.run``), the server, batch and eval alike.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel

from aris.engines.base import Engine
from aris.inputs.base import Kind, PreparedInput
from aris.result import Result
from aris.types import GenerationParams, Message

# Called with each piece of the answer as it streams: (kind, text), kind "thought" or "answer".
OnToken = Callable[[str, str], None]


class Task(abc.ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    input_kinds: ClassVar[tuple[Kind, ...]]
    n_inputs: ClassVar[tuple[int, int]] = (1, 1)  # (min, max) prepared inputs
    schema: ClassVar[type[BaseModel] | None] = None
    think: ClassVar[bool] = False

    @abc.abstractmethod
    def messages(
        self, inputs: list[PreparedInput], question: str | None, options: dict[str, Any]
    ) -> list[Message]:
        """The exact conversation the recipe prescribes. Pure: tests call it alone."""

    @abc.abstractmethod
    def parse(self, text: str, inputs: list[PreparedInput], options: dict[str, Any]) -> Any:
        """Turn the answer text (thought already removed) into the validated output; raise OutputError."""

    @abc.abstractmethod
    def run(
        self,
        engine: Engine,
        inputs: list[PreparedInput],
        question: str | None = None,
        *,
        options: dict[str, Any] | None = None,
        params: GenerationParams | None = None,
        on_token: OnToken | None = None,
    ) -> Result:
        """Prompt, generate (constrained where the engine can), parse, validate, repair once."""
