"""Anatomical localization on a chest X-ray: boxes in MedGemma's format, mapped back to the film.

The model sees the film padded to a square (symmetric zero padding of the short side) and answers
``[y0, x0, y1, x1]`` in 0..1000 of that square. Back on the original film:
``x_px = x/1000*S - pad_left``, ``y_px = y/1000*S - pad_top``, ``S = max(H, W)``, clipped to the film.

Validation rules (applied the same way to every box):

* four finite numbers, else the box is rejected (NaN and infinity, in JSON or as strings, and
  true/false are not coordinates);
* all four in [0, 1] with at least one written as a float (``0.5``, ``1.0``): fractions of the square
  (the paper's wording), scaled by 1000; integers (``[0, 0, 1, 1]``) and anything larger are 0..1000;
* outside 0..1000 after that: rejected (no silent clipping of a value the model got wrong);
* corners in the wrong order (y0 > y1 or x0 > x1): swapped, with a warning; the box is the same set
  of pixels, and models often write the larger value first;
* zero height or width, or no overlap with the film once the padding is removed: rejected.

A reply whose boxes are all rejected fails validation (and is repaired once); a reply with some
good boxes keeps those and lists the rejected ones as warnings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image, ImageDraw
from pydantic import BaseModel, Field, field_validator, model_validator

from aris.errors import InputError
from aris.inputs.base import Kind, Padding, PreparedInput
from aris.tasks import report_prompts as R
from aris.tasks.base import Output, Task, TaskOptions, system_messages
from aris.tasks.parsing import ParseError, extract_json, norm
from aris.types import ImagePart, Message, TextPart

DEFAULT_LABELS = ("right lung", "left lung", "heart")


class PixelBox(BaseModel):
    x0: float
    y0: float
    x1: float
    y1: float


class Box(BaseModel):
    label: str
    box_2d: list[float] = Field(description="[y0, x0, y1, x1] in 0..1000 of the padded square, validated")
    box_px: PixelBox = Field(description="the same box in pixels of the original (unpadded) image")


class LocalizeOut(Output):
    boxes: list[Box] = Field(min_length=1)
    missing: list[str] = Field(default_factory=list, description="requested labels with no box")
    image_size: tuple[int, int]  # original (width, height)
    padding: dict[str, int]


class LocalizeOptions(TaskOptions):
    labels: list[str] = Field(default_factory=lambda: list(DEFAULT_LABELS), min_length=1)
    prompts: R.PromptSet = R.prompts_field()

    @field_validator("labels", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _one_object(self) -> LocalizeOptions:
        if self.prompts == "report" and len(self.labels) != 1:
            raise ValueError('the report\'s prompt "Where is the {object}?" asks for one label at a time')
        return self


# -- geometry (pure) ----------------------------------------------------------------------------------


def square_padding(width: int, height: int) -> Padding:
    """Symmetric zero padding to a square; the odd pixel goes right/bottom (as the reader does)."""
    size = max(width, height)
    return Padding(left=(size - width) // 2, top=(size - height) // 2, size=size, width=width, height=height)


def pad_image(image: Image.Image, padding: Padding) -> Image.Image:
    canvas = Image.new("RGB", (padding.size, padding.size), (0, 0, 0))
    canvas.paste(image.convert("RGB"), (padding.left, padding.top))
    return canvas


def model_view(prepared: PreparedInput) -> tuple[Image.Image, Image.Image, Padding]:
    """(image the model sees, original image, padding), padding the image here if the reader did not."""
    images = prepared.images
    if len(images) != 1:
        src = prepared.provenance.sources[0] if prepared.provenance.sources else None
        raise InputError(src, f"localization takes one image; this input has {len(images)}")
    img = images[0]
    if prepared.padding is not None:
        p = prepared.padding
        original = img.crop((p.left, p.top, p.left + p.width, p.top + p.height))
        return img, original, p
    p = square_padding(img.width, img.height)
    return pad_image(img, p) if img.width != img.height else img, img, p


def normalize_box(values: Any) -> tuple[list[float], list[str]]:
    """A validated ``[y0, x0, y1, x1]`` in 0..1000 and the caveats, or ValueError saying why not."""
    if not isinstance(values, list | tuple) or len(values) != 4:
        raise ValueError(f"box_2d must be 4 numbers [y0, x0, y1, x1], got {values!r}")
    if any(isinstance(x, bool) for x in values):  # float(True) is 1.0: not a coordinate
        raise ValueError(f"box_2d must be numbers, got {values!r}")
    try:
        v = [float(x) for x in values]
    except (TypeError, ValueError):
        raise ValueError(f"box_2d must be numbers, got {values!r}") from None
    # every comparison with NaN is false, so a NaN would pass every check below
    if not all(math.isfinite(x) for x in v):
        raise ValueError(f"box_2d must be finite numbers, got {values!r}")
    notes: list[str] = []
    # JSON 1.0 is a float, 1 an int: a float anywhere in an all-[0, 1] box means fractions
    if all(0.0 <= x <= 1.0 for x in v) and any(isinstance(x, float) or "." in str(x) for x in values):
        v = [x * 1000.0 for x in v]
        notes.append("coordinates in [0, 1] read as fractions and scaled by 1000")
    if any(x < 0.0 or x > 1000.0 for x in v):
        raise ValueError(f"box_2d {values!r} is outside 0..1000")
    y0, x0, y1, x1 = v
    if y0 > y1 or x0 > x1:
        y0, y1 = min(y0, y1), max(y0, y1)
        x0, x1 = min(x0, x1), max(x0, x1)
        notes.append("corners given in the wrong order were swapped")
    if y0 == y1 or x0 == x1:
        raise ValueError(f"box_2d {values!r} has no area")
    return [y0, x0, y1, x1], notes


def to_pixels(box: list[float], padding: Padding) -> PixelBox | None:
    """Map a 0..1000 box on the padded square to original-image pixels, clipped; None if off the image."""
    y0, x0, y1, x1 = box
    s = padding.size

    def px(x: float) -> float:
        return min(max(x / 1000.0 * s - padding.left, 0.0), float(padding.width))

    def py(y: float) -> float:
        return min(max(y / 1000.0 * s - padding.top, 0.0), float(padding.height))

    out = PixelBox(x0=px(x0), y0=py(y0), x1=px(x1), y1=py(y1))
    if out.x1 <= out.x0 or out.y1 <= out.y0:
        return None
    return out


def draw_overlay(original: Image.Image, boxes: list[Box]) -> Image.Image:
    """The boxes drawn on the original image, labelled, in distinct colours."""
    colors = ["#ff3b30", "#34c759", "#0a84ff", "#ffcc00", "#af52de", "#ff9500", "#5ac8fa"]
    img = original.convert("RGB").copy()
    draw = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 300))
    for i, b in enumerate(boxes):
        c = colors[i % len(colors)]
        r = b.box_px
        draw.rectangle([r.x0, r.y0, r.x1, r.y1], outline=c, width=width)
        draw.text((r.x0 + width + 2, r.y0 + width + 2), b.label, fill=c)
    return img


# -- task -----------------------------------------------------------------------------------------------


class CxrLocalize(Task):
    name = "cxr-localize"
    description = "Chest X-ray + anatomy/finding names -> boxes on the original film (JSON + overlay PNG)."
    input_kinds: ClassVar[tuple[Kind, ...]] = ("cxr", "image")
    Options = LocalizeOptions
    read_options: ClassVar[dict[str, Any]] = {"pad_square": True}
    max_new_tokens = 384

    def messages(self, inputs: list[PreparedInput], question: str | None, options: Any) -> list[Message]:
        o = self.opts(options)
        view, _, _ = model_view(inputs[0])
        if o.prompts == "report":
            # {{image}} + Where is the {object}?  The padded square, as the recipe feeds it.
            text = R.fill(R.LOCALIZE, {"{object}": o.labels[0]})
            return [*system_messages(o), Message("user", [ImagePart(view), TextPart(text)])]
        names = ", ".join(o.labels)
        prompt = (
            f"Locate the following in this chest X-ray: {names}.\n"
            + (f"{question.strip()}\n" if question else "")
            + "For each, give a bounding box [y0, x0, y1, x1] (top-left corner, then bottom-right corner), "
            "with coordinates normalized to 0-1000. "
            'After "Final Answer:", output a JSON list of {"box_2d": [y0, x0, y1, x1], "label": "..."} '
            "inside a ```json block."
        )
        return [*system_messages(o), Message("user", [ImagePart(view), TextPart(prompt)])]

    def reply_schema(self, inputs: list[PreparedInput], options: Any) -> dict[str, Any] | None:
        if self.opts(options).prompts == "report":
            return None  # the model's own "Final Answer:" + fenced JSON, unconstrained
        return {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "box_2d": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
                    "label": {"type": "string"},
                },
                "required": ["box_2d", "label"],
            },
            "minItems": 1,
        }

    def parse(self, text: str, inputs: list[PreparedInput], options: Any) -> LocalizeOut:
        o = self.opts(options)
        _, original, padding = model_view(inputs[0])
        found = extract_json(text, (list, dict))
        items = found.value
        if isinstance(items, dict):  # {"boxes": [...]} or one box alone
            items = items.get("boxes", [items]) if "box_2d" not in items else [items]
        if not isinstance(items, list):
            raise ParseError('expected a JSON list of {"box_2d": [...], "label": "..."}')
        warnings = list(found.notes)
        errors: list[str] = []
        boxes: list[Box] = []
        by_norm = {norm(lbl): lbl for lbl in o.labels}
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "box_2d" not in item:
                errors.append(f"item {i}: not an object with box_2d")
                continue
            label = str(item.get("label") or "").strip() or f"box {i + 1}"
            label = by_norm.get(norm(label), label)
            try:
                box, notes = normalize_box(item["box_2d"])
            except ValueError as e:
                errors.append(f"item {i} ({label}): {e}")
                continue
            px = to_pixels(box, padding)
            if px is None:
                errors.append(
                    f"item {i} ({label}): box_2d {item['box_2d']!r} lies in the padding, off the image"
                )
                continue
            warnings.extend(f"{label}: {n}" for n in notes)
            boxes.append(Box(label=label, box_2d=box, box_px=px))
        if not boxes:
            raise ParseError(errors or ["no boxes in the reply"])
        warnings.extend(f"rejected {e}" for e in errors)
        got = {norm(b.label) for b in boxes}
        out = LocalizeOut(
            boxes=boxes,
            missing=[lbl for lbl in o.labels if norm(lbl) not in got],
            image_size=(original.width, original.height),
            padding={"left": padding.left, "top": padding.top, "size": padding.size},
        )
        return out.warn(*warnings)  # type: ignore[return-value]

    def finalize(
        self, value: Any, inputs: list[PreparedInput], options: Any, files_dir: Path | None = None
    ) -> Any:
        parsed = value.model_dump(mode="json")
        if files_dir is not None:
            files_dir.mkdir(parents=True, exist_ok=True)
            _, original, _ = model_view(inputs[0])
            (files_dir / "boxes.json").write_text(json.dumps(parsed, indent=2))
            draw_overlay(original, value.boxes).save(files_dir / "overlay.png")
            parsed["files"] = {"boxes": "boxes.json", "overlay": "overlay.png"}  # relative to files_dir
        return parsed
