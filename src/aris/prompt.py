"""One prompt builder for every engine, faithful to Gemma 3's chat template.

Gemma 3 has no system role: a system message's text and a blank line are folded into the
first user turn; roles must alternate user/model. Every engine serialises the same
:class:`Turn` list: transformers and llama.cpp as the exact template string, OpenAI-compatible
servers as ``messages`` whose server-side template produces that same string.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image

from aris.errors import PromptError
from aris.types import ImagePart, Message, Part, TextPart

THINK_PREFIX = "SYSTEM INSTRUCTION: think silently if needed. "
BOS = "<bos>"
START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"
START_OF_IMAGE = "<start_of_image>"
THOUGHT_OPEN = "<unused94>"
THOUGHT_CLOSE = "<unused95>"


@dataclass
class Turn:
    role: Literal["user", "model"]
    parts: list[Part]
    prefix: str = ""  # the folded system text + blank line, first turn only, emitted verbatim

    @property
    def images(self) -> list[Image.Image]:
        """Pillow copies of the turn's images, for engines and encoders that take Pillow images."""
        return [p.image for p in self.parts if isinstance(p, ImagePart)]

    @property
    def arrays(self) -> list[np.ndarray]:
        """The turn's images as read-only (H, W, 3) uint8 arrays, without copying."""
        return [p.pixels for p in self.parts if isinstance(p, ImagePart)]


def build_turns(messages: list[Message], *, think: bool = False) -> list[Turn]:
    """Normalise a conversation into alternating Gemma turns, system text folded in.

    With ``think`` the thinking instruction is put before any system text, as Google's
    evaluation did for MedGemma 1.5 and 27B.
    """
    system = [m for m in messages if m.role == "system"]
    if system and messages[0].role != "system":
        raise PromptError("a system message must come first")
    if len(system) > 1:
        raise PromptError("at most one system message")
    for m in system:
        if any(isinstance(p, ImagePart) for p in m.parts):
            raise PromptError("a system message cannot hold images")
    # Not trimmed: the template emits the system text verbatim, then a blank line.
    system_text = "".join(p.text for p in system[0].parts if isinstance(p, TextPart)) if system else ""
    if think:
        # Alone, the instruction is "...if needed." with no trailing space before the blank line
        # (Google's notebooks pass it as the whole system text).
        system_text = THINK_PREFIX + system_text if system_text else THINK_PREFIX.rstrip()
    turns: list[Turn] = []
    for m in messages[len(system) :]:
        role: Literal["user", "model"] = "model" if m.role == "assistant" else "user"
        expected = "user" if len(turns) % 2 == 0 else "model"
        if role != expected:
            raise PromptError(
                f"conversation roles must alternate user/model; message {len(turns) + len(system) + 1} "
                f"is {m.role!r} where {'user' if expected == 'user' else 'assistant'} was expected"
            )
        turns.append(Turn(role, list(m.parts)))
    if not turns:
        raise PromptError("the conversation has no user message")
    if turns[-1].role != "user":
        raise PromptError("the last message must be the user's")
    if system_text:
        turns[0].prefix = system_text + "\n\n"
    return turns


def render(turns: list[Turn], *, bos: bool = True, image_token: str = START_OF_IMAGE) -> str:
    """The Gemma 3 template as a string, with ``image_token`` where each image goes.

    Text parts are trimmed and joined with no separator, as the template does; the folded
    system text is emitted verbatim with its blank line. The processor later expands each
    ``<start_of_image>`` into the 256 soft tokens and their surrounding blank lines.
    """
    out = [BOS] if bos else []
    for turn in turns:
        out.append(f"{START_OF_TURN}{turn.role}\n{turn.prefix}")
        for part in turn.parts:
            out.append(image_token if isinstance(part, ImagePart) else part.text.strip())
        out.append(f"{END_OF_TURN}\n")
    out.append(f"{START_OF_TURN}model\n")
    return "".join(out)


def image_to_data_uri(image: Image.Image, fmt: str = "PNG") -> str:
    """Base64 data URI; PNG by default because it is lossless (JPEG would alter CT windows)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format=fmt)
    mime = "image/png" if fmt.upper() == "PNG" else f"image/{fmt.lower()}"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode()}"


def to_openai_messages(turns: list[Turn], *, image_format: str = "PNG") -> list[dict[str, Any]]:
    """OpenAI chat ``messages`` whose server-side Gemma template reproduces :func:`render`.

    The folded system text goes back out as a ``system`` message: the server's template trims
    user text items, so folding it here would lose the blank line the template puts after it.
    """
    messages: list[dict[str, Any]] = []
    if turns and turns[0].prefix:
        messages.append({"role": "system", "content": turns[0].prefix.removesuffix("\n\n")})
    for turn in turns:
        content: list[dict[str, Any]] = []
        for part in turn.parts:
            if isinstance(part, ImagePart):
                content.append(
                    {"type": "image_url", "image_url": {"url": image_to_data_uri(part.image, image_format)}}
                )
            else:
                content.append({"type": "text", "text": part.text})
        role = "assistant" if turn.role == "model" else "user"
        if all(c["type"] == "text" for c in content):
            # one string, which the template trims as a whole: trim each part as render() does
            messages.append({"role": role, "content": "".join(c["text"].strip() for c in content)})
        else:
            messages.append({"role": role, "content": content})
    return messages


def prompt_hash(turns: list[Turn]) -> str:
    """sha256 over the rendered template and the exact image pixels: the identity of a prompt."""
    h = hashlib.sha256(render(turns).encode())
    for turn in turns:
        for pixels in turn.arrays:  # hashed as the RGB image they hold: (width, height), then bytes
            h.update(f"{(pixels.shape[1], pixels.shape[0])}".encode())
            h.update(pixels.data)
    return h.hexdigest()


def count_images(turns: list[Turn]) -> int:
    return sum(len(t.arrays) for t in turns)
