"""The record every answer becomes: text, thought, provenance, timings and the model card's position."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from aris.notice import NOTICE


class Timings(BaseModel):
    prepare_s: float = 0.0
    first_token_s: float | None = None
    generate_s: float = 0.0
    total_s: float = 0.0


class Result(BaseModel):
    task: str = "ask"
    model: str
    engine: str
    text: str = Field(description="The answer, thought removed.")
    thought: str | None = Field(default=None, description="The model's thought; shown only on request.")
    raw: str = Field(default="", description="Exactly what the engine produced.")
    parsed: Any = None
    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(
        default_factory=list, description="Accepted with a caveat: a cut-off list kept, a box reordered."
    )
    repaired: bool = Field(default=False, description="The first reply failed validation; a repair was used.")
    steps: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Each generate call of a task: name, prompt hash, reply, tokens, time.",
    )
    prompt_sha256: str = ""
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="The decoding settings of the first call: max_new_tokens, temperature, top_p, seed, "
        "think, and the sha256 of the JSON schema decoding was constrained to (null when free).",
    )
    provenance: list[dict[str, Any]] = Field(default_factory=list)
    usage: dict[str, int] = Field(default_factory=dict)
    timings: Timings = Field(default_factory=Timings)
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    demo: bool = False
    notice: str = NOTICE
