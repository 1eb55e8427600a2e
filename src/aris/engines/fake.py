"""A scripted engine for unit tests of the code above engines (parsers, CLI, batch).

It replays queued replies; it is never used to make an engine test pass.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from aris.engines.base import Capabilities, Engine
from aris.prompt import Turn, render
from aris.types import GenerationParams


class FakeEngine(Engine):
    kind = "fake"

    def __init__(
        self,
        model_id: str = "fake",
        replies: list[str] | None = None,
        chunk: int = 3,
        max_context: int = 131072,
        max_images: int = 200,
    ) -> None:
        super().__init__(model_id)
        self.replies: deque[str] = deque(replies or [])
        self.chunk = chunk
        self.prompts: list[str] = []
        self.params: list[GenerationParams] = []
        self._caps = Capabilities(
            vision=True, max_context=max_context, max_images=max_images, json_schema=True
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def enqueue(self, *replies: str) -> None:
        self.replies.extend(replies)

    def stream(self, turns: list[Turn], params: GenerationParams) -> Iterator[str]:
        self.prompts.append(render(turns))
        self.params.append(params)
        reply = self.replies.popleft() if self.replies else "ok"
        for i in range(0, len(reply), self.chunk):
            yield reply[i : i + self.chunk]
