"""Plain data passed between layers: file -> inputs -> prompt -> engine -> parser."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True, init=False, eq=False)
class ImagePart:
    """One RGB image as the model will see it (before the processor's resize).

    Held as a read-only (H, W, 3) uint8 array, not a Pillow image: Pillow keeps RGB at four bytes a
    pixel, so 85 CT slices of 512x512 took 85 MiB as images against 64 MiB as arrays, and that was the
    peak of reading a volume (bench/prep_ct.py). :attr:`image` gives a Pillow copy for code that needs
    one; give it to an engine or encoder, do not keep it. Any Pillow mode is taken and converted to RGB,
    as every engine did before sending it to the model.
    """

    pixels: np.ndarray
    label: str | None  # e.g. "SLICE 3"; kept for display, the prompt carries it as a TextPart

    def __init__(self, image: Image.Image | np.ndarray, label: str | None = None) -> None:
        if isinstance(image, Image.Image):
            image = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        elif image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"an image part takes (H, W, 3) uint8 pixels, not {image.dtype} {image.shape}")
        pixels = np.ascontiguousarray(image)
        if pixels.flags.writeable:
            pixels = pixels.view()
            pixels.flags.writeable = False  # shared, never changed in place
        object.__setattr__(self, "pixels", pixels)
        object.__setattr__(self, "label", label)

    @property
    def image(self) -> Image.Image:
        """A Pillow copy of the pixels (RGB)."""
        return Image.fromarray(self.pixels, "RGB")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as Pillow gives it."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImagePart):
            return NotImplemented
        return self.label == other.label and np.array_equal(self.pixels, other.pixels)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[type[ImagePart], tuple[np.ndarray, str | None]]:
        # through __init__, so a copy or an unpickled part (a Ray worker's) is read-only too
        return ImagePart, (self.pixels, self.label)


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
        """Pillow copies of the message's images."""
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
