"""The one generation path above the engines: prompt -> budget check -> stream -> split -> Result."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aris.engines.base import Engine
from aris.prompt import Turn, build_turns, count_images, prompt_hash
from aris.result import Result, Timings
from aris.thinking import ThoughtSplitter, split_text
from aris.types import GenerationParams, Message, Provenance

logger = logging.getLogger(__name__)

OnPiece = Callable[[str, str], None]  # (kind, text): kind is "thought" or "answer"


def generate(
    engine: Engine,
    messages: list[Message],
    params: GenerationParams | None = None,
    *,
    on_piece: OnPiece | None = None,
    task: str = "ask",
    provenance: list[Provenance] | None = None,
    prepare_s: float = 0.0,
) -> Result:
    """Run one conversation through ``engine`` and record it.

    Thought never reaches ``text`` or an ``answer`` piece, whatever chunks the engine streams
    (:mod:`aris.thinking`). ``text`` and ``thought`` are read from the whole reply, so they follow
    the rule even where a live stream could not take back what it sent.
    """
    params = params or GenerationParams()
    turns = build_turns(messages, think=params.think)
    engine.check_budget(turns, params)
    digest = prompt_hash(turns)
    splitter = ThoughtSplitter(think=params.think)
    raw: list[str] = []
    t0 = time.perf_counter()
    first: float | None = None

    def take(pieces: list) -> None:  # type: ignore[type-arg]
        if on_piece is not None:
            for piece in pieces:
                on_piece(piece.kind, piece.text)

    stream = engine.stream(turns, params)
    try:
        for chunk in stream:
            if first is None:
                first = time.perf_counter() - t0
            raw.append(chunk)
            take(splitter.feed(chunk))
        take(splitter.finish())
    finally:
        # A consumer that stops early (cancelled, client gone) must stop the engine now, not at GC.
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    gen_s = time.perf_counter() - t0
    raw_text = "".join(raw)
    thought, answer = split_text(raw_text)
    logger.info("generated %d chars in %.2fs (prompt %s)", len(raw_text), gen_s, digest[:12])
    return Result(
        task=task,
        model=engine.model_id,
        engine=engine.kind,
        text=answer.strip(),
        thought=thought.strip() or None,
        raw=raw_text,
        prompt_sha256=digest,
        params=settings_record(params),
        provenance=[_prov_dict(p) for p in provenance or []],
        usage=_usage(engine, stream, turns, raw_text),
        timings=Timings(
            prepare_s=prepare_s, first_token_s=first, generate_s=gen_s, total_s=prepare_s + gen_s
        ),
    )


def _usage(engine: Engine, stream: object, turns: list[Turn], raw: str) -> dict[str, int]:
    """Token counts: the engine's own report when it has one, else counted here."""
    reported = getattr(stream, "usage", None) or {}
    if "completion_tokens" in reported:
        completion = int(reported["completion_tokens"])
    else:  # counted only when the engine did not say: a remote count queues behind generations
        completion = engine.count_text_tokens(raw) if raw else 0
    usage = {"images": count_images(turns), "completion_tokens": completion}
    if "prompt_tokens" in reported:
        usage["prompt_tokens"] = int(reported["prompt_tokens"])
    if "cut" in reported:
        usage["cut"] = int(reported["cut"])
    return usage


def was_cut(usage: dict[str, int], max_new_tokens: int) -> bool:
    """Whether a reply stopped for want of room, not at its end: the engine's word when it gave one
    (a server's ``finish_reason``, a full llama.cpp context), else all of ``max_new_tokens`` used."""
    if "cut" in usage:
        return bool(usage["cut"])
    return bool(max_new_tokens) and usage.get("completion_tokens", 0) >= max_new_tokens


def settings_record(params: GenerationParams) -> dict[str, Any]:
    """Decoding settings as recorded with a result (the schema by digest: it can be large)."""
    schema = params.json_schema
    return {
        "max_new_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "seed": params.seed,
        "stop": list(params.stop),
        "think": params.think,
        "json_schema_sha256": (
            hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest() if schema else None
        ),
    }


def _prov_dict(p: Provenance) -> dict:  # type: ignore[type-arg]
    return {"kind": p.kind, "sources": p.sources, "details": p.details, "warnings": p.warnings}
