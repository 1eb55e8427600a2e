"""Plain data passed between layers: file -> inputs -> prompt -> engine -> parser."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    """One RGB image as the model will see it (before the processor's resize)."""

    image: Image.Image
    label: str | None = None  # e.g. "SLICE 3"; kept for display, the prompt carries it as a TextPart


Part = TextPart | ImagePart


@dataclass
class Message:
    role: Role
    parts: list[Part]

    @classmethod
    def user(cls, *parts: Part | str) -> Message:
        return cls("user", [TextPart(p) if isinstance(p, str) else p for p in parts])

    @classmethod
    def system(cls, text: str) -> Message:
        return cls("system", [TextPart(text)])

    @classmethod
    def assistant(cls, text: str) -> Message:
        return cls("assistant", [TextPart(text)])

    @property
    def images(self) -> list[Image.Image]:
        return [p.image for p in self.parts if isinstance(p, ImagePart)]


@dataclass
class GenerationParams:
    """Decoding settings. Greedy by default: MedGemma was evaluated that way."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None
    think: bool = False


@dataclass
class Provenance:
    """Where a prepared input came from and what was chosen, for the record and the UI."""

    kind: str
    sources: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    image_count: int = 0
