"""An example Aris plugin: a reader, a task and an engine, each registered by one entry point."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from aris.config import ArisSettings
from aris.engines.base import Capabilities, Engine
from aris.errors import InputError
from aris.inputs import Reader
from aris.inputs.base import PreparedInput
from aris.prompt import Turn
from aris.tasks.base import Output, Task, TaskOptions
from aris.tasks.parsing import answer_only
from aris.types import GenerationParams, Message, Provenance, TextPart

MAGIC = b"NOTE\n"


def is_note(path: Path) -> bool:
    if not path.is_file() or path.suffix != ".note":
        return False
    with path.open("rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def read_note(path: Path, *, max_chars: int = 4000) -> PreparedInput:
    if not is_note(path):
        raise InputError(path, "not a .note file (it must start with the line NOTE)")
    text = path.read_text(encoding="utf-8")[len(MAGIC) :].strip()
    if not text:
        raise InputError(path, "the note is empty")
    return PreparedInput(
        kind="note",
        parts=[TextPart(text[:max_chars])],
        provenance=Provenance(kind="note", sources=[str(path)], details={"chars": len(text)}),
        text=text,
    )


NOTE_READER = Reader("note", read_note, options=("max_chars",), sniff=is_note, description="clinical note")


class SummaryOut(Output):
    summary: str


class NoteSummaryOptions(TaskOptions):
    words: int = Field(default=20, ge=3, le=200, description="Longest summary, in words.")


class NoteSummary(Task):
    name = "note-summary"
    description = "Clinical note -> a one-line summary (example plugin)."
    input_kinds: ClassVar[tuple[str, ...]] = ("note",)
    Options = NoteSummaryOptions
    read_kind = "note"
    max_new_tokens = 64

    def messages(self, inputs: list[PreparedInput], question: str | None, options: Any) -> list[Message]:
        o = self.opts(options)
        return [Message.user(f"Summarise this clinical note in at most {o.words} words:\n\n{inputs[0].text}")]

    def parse(self, text: str, inputs: list[PreparedInput], options: Any) -> SummaryOut:
        o = self.opts(options)
        words = answer_only(text).split()
        return SummaryOut(summary=" ".join(words[: o.words]))


class CannedEngine(Engine):
    """Replies with the text given as ``--engine-arg reply=...`` (how an engine declares its settings)."""

    kind = "canned"
    settings_used = ("engine_args",)

    def __init__(self, reply: str) -> None:
        super().__init__("canned")
        self.reply = reply

    @classmethod
    def from_settings(cls, settings: ArisSettings) -> CannedEngine:
        return cls(str(settings.engine_args.get("reply", "no reply configured")))

    def identity(self) -> dict[str, Any]:
        return {"engine": self.kind, "model": self.model_id, "reply": self.reply}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(vision=False, max_context=8192, max_images=0, json_schema=False)

    def stream(self, turns: list[Turn], params: GenerationParams) -> Iterator[str]:
        yield self.reply
