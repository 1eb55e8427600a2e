"""What every reader returns: the model-ready input, in the order the recipe puts it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from aris.types import ImagePart, Part, Provenance, TextPart

# An input kind: a built-in one ("cxr", "image", "ct", "mri", "wsi", "pdf", "fhir") or a plugin reader's.
Kind = str


@dataclass
class Padding:
    """Symmetric zero padding to a square, kept so boxes can be mapped back to the original image."""

    left: int
    top: int
    size: int  # side of the square, S = max(H, W)
    width: int  # original width
    height: int  # original height


@dataclass
class PreparedInput:
    """A file, folder or zip turned into exactly what MedGemma was trained on.

    ``parts`` are the images and the text labels between them in model order (a CT is
    ``[img, "SLICE 1", img, "SLICE 2", ...]``); a task adds its instruction before and its
    question after. ``text`` is optional context (a PDF's text layer, FHIR renderings).
    """

    kind: Kind
    parts: list[Part]
    provenance: Provenance
    text: str | None = None
    padding: Padding | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> list[Image.Image]:
        """Pillow copies of the images, in model order (see :attr:`arrays` to look without copying)."""
        return [p.image for p in self.parts if isinstance(p, ImagePart)]

    @property
    def arrays(self) -> list[np.ndarray]:
        """The images' (H, W, 3) uint8 pixels, read-only, in model order."""
        return [p.pixels for p in self.parts if isinstance(p, ImagePart)]

    @property
    def labels(self) -> list[str]:
        """The label shown for each image: its own, or the text part that follows it."""
        out: list[str] = []
        for i, p in enumerate(self.parts):
            if isinstance(p, ImagePart):
                nxt = self.parts[i + 1] if i + 1 < len(self.parts) else None
                out.append(p.label or (nxt.text if isinstance(nxt, TextPart) else f"IMAGE {len(out) + 1}"))
        return out
