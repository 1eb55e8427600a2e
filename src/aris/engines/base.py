"""The engine interface: stream a reply for a conversation of text and image parts.

An engine receives Gemma turns built by :mod:`aris.prompt` (the one prompt builder) and
yields raw text chunks, thought markers included; splitting thought from answer, parsing and
recording happen above it, the same for every engine.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from aris.errors import BudgetError
from aris.prompt import Turn, count_images
from aris.types import GenerationParams

if TYPE_CHECKING:
    from aris.config import ArisSettings

IMAGE_TOKENS = 256  # soft tokens per image for every MedGemma build
# Each image's <start_of_image> is in the rendered text; the processor, libmtmd and a server's template
# all add "\n\n" before it and <end_of_image> "\n\n" after its soft tokens: up to 3 tokens the text does
# not show (2 between neighbouring images, whose newlines merge). Counted high, so a reply never meets
# a full context the check let through.
IMAGE_FRAME_TOKENS = 3


@dataclass(frozen=True)
class Capabilities:
    vision: bool
    max_context: int
    max_images: int
    json_schema: bool
    image_tokens: int = IMAGE_TOKENS
    concurrent_requests: int = 1


def images_digest(images: Iterable[np.ndarray]) -> str:
    """sha256 over images' (H, W, 3) uint8 pixels with their sizes, in order: what a cached prompt prefix
    must match besides its token ids, since every image soft token has the same id."""
    h = hashlib.sha256()
    for pixels in images:
        h.update(f"{(pixels.shape[1], pixels.shape[0])}RGB".encode())
        h.update(np.ascontiguousarray(pixels).data)
    return h.hexdigest()


class Reply(Iterator[str]):
    """A streamed reply (an iterator of text chunks) that also carries the engine's own ``usage``.

    When the stream ends, ``usage`` may hold ``completion_tokens`` and ``prompt_tokens`` as the engine
    counted them (exact, not re-tokenized text), and ``cut``: 1 when generation stopped for want of
    room (``max_new_tokens`` or a full context) rather than at the end of the turn or a stop string,
    0 when the engine knows it was not.
    """

    def __init__(self, chunks: Generator[str, None, None], usage: dict[str, int]) -> None:
        self._chunks = chunks
        self.usage = usage

    def __iter__(self) -> Reply:
        return self

    def __next__(self) -> str:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()


class Engine(abc.ABC):
    """A loaded model that can generate. Backends import their libraries only when constructed.

    A backend is one class registered once in :data:`aris.engines.ENGINES`; what the rest of Aris needs
    to know about it is declared here as data: whether it runs in this process (``local``), which
    settings choose and change it (``settings_used``: they identify a batch/eval run and become its
    record), and how to build it from settings (:meth:`from_settings`).
    """

    kind: ClassVar[str] = ""
    local: ClassVar[bool] = True  # runs the model in this process (False: talks to a server)
    # Counting tokens costs a round trip (it queues behind generations on a busy server): avoid it.
    remote_tokenizer: ClassVar[bool] = False
    settings_used: ClassVar[tuple[str, ...]] = ("model",)

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    @classmethod
    def from_settings(cls, settings: ArisSettings) -> Engine:
        """Build the engine from settings (flags > ``ARIS_*`` > config file); ConfigError names the fix."""
        return cls(settings.model or cls.kind)

    def identity(self) -> dict[str, Any]:
        """Everything about this engine that can change an answer, for result keys.

        Two engines with equal identities give the same reply to the same prompt and settings; anything
        that may not (weights, adapter, quantization, dtype, projector, context) belongs here, so a
        result is never served from another model's cache.
        """
        return {"engine": self.kind, "model": self.model_id}

    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities: ...

    @abc.abstractmethod
    def stream(self, turns: list[Turn], params: GenerationParams) -> Iterator[str]:
        """Yield raw text chunks of the model's reply (end-of-turn markers removed).

        The iterator may carry ``usage`` (``prompt_tokens``, ``completion_tokens``) once it ends, when
        the backend knows them exactly; :func:`aris.generate.generate` then counts nothing again.
        """

    def count_text_tokens(self, text: str) -> int:
        """Tokens of plain text. Backends with a tokenizer override this; the estimate errs high."""
        return max(1, len(text) // 3)

    def generate_batch(self, prompts: list[list[Turn]], params: GenerationParams) -> list[str]:
        """Replies for several independent prompts. Engines that batch natively override this."""
        return ["".join(self.stream(turns, params)) for turns in prompts]

    def check_budget(self, turns: list[Turn], params: GenerationParams) -> None:
        """Refuse a request that cannot fit, before any engine work, saying what to change."""
        caps = self.capabilities
        n_images = count_images(turns)
        if n_images and not caps.vision:
            raise BudgetError(
                f"{self.kind} model {self.model_id!r} cannot take images; use a vision build "
                "(for a GGUF, load it with its mmproj projector)"
            )
        if n_images > caps.max_images:
            raise BudgetError(
                f"{n_images} images exceed this engine's limit of {caps.max_images} per prompt; "
                "sample fewer slices/tiles or raise the engine's image limit "
                "(vLLM: --limit-mm-per-prompt '{\"image\": N}')"
            )
        from aris.prompt import render

        text = render(turns)
        image_cost = n_images * (caps.image_tokens + IMAGE_FRAME_TOKENS)
        room = caps.max_context - image_cost - params.max_new_tokens
        if self.remote_tokenizer and len(text.encode("utf-8")) <= room:
            return  # a token is at least one byte: it fits without asking the server to count
        text_tokens = self.count_text_tokens(text)
        needed = text_tokens + image_cost + params.max_new_tokens
        if needed > caps.max_context:
            raise BudgetError(
                f"prompt needs about {needed} tokens ({n_images} images x {caps.image_tokens} + "
                f"{n_images * IMAGE_FRAME_TOKENS} around them + {text_tokens} text + "
                f"{params.max_new_tokens} to generate) but the engine's context is "
                f"{caps.max_context}; raise the context (--n-ctx / vLLM --max-model-len >= 32768 for an "
                "85-slice CT, >= 40960 for a 126-tile slide) or send fewer images (fewer slices or tiles)"
            )

    def close(self) -> None:  # noqa: B027 - most engines hold nothing to release
        """Release the model. Safe to call twice."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
