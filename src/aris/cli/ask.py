"""``aris ask``: one question, optionally about images or studies, answer streamed."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from aris.cli.app import app, console, err_console
from aris.cli.options import engine_options
from aris.config import ArisSettings
from aris.engines import load_engine
from aris.generate import generate
from aris.result import Result
from aris.types import GenerationParams, Message, Part, TextPart


def print_stream(show_thought: bool):  # type: ignore[no-untyped-def]
    """A piece callback that writes the answer as it streams; thought only when asked."""
    state = {"in_thought": False}

    def on_piece(kind: str, text: str) -> None:
        if kind == "thought":
            if not show_thought:
                return
            if not state["in_thought"]:
                err_console.print("[dim]── thought ──[/]")
                state["in_thought"] = True
            err_console.print(text, end="", style="dim", highlight=False, markup=False)
            return
        if state["in_thought"]:
            err_console.print("\n[dim]── answer ──[/]")
            state["in_thought"] = False
        sys.stdout.write(text)
        sys.stdout.flush()

    return on_piece


def print_footer(result: Result) -> None:
    sys.stdout.write("\n")
    console.print(f"[dim]model: {result.model} ({result.engine}) · prompt {result.prompt_sha256[:12]}[/]")
    console.print(f"[bold yellow]{result.notice}[/]")


@app.command("ask")
@engine_options
def ask_cmd(
    question: Annotated[str, typer.Argument(help="The question, asked last (after any images).")],
    image: Annotated[
        list[Path] | None,
        typer.Option(
            "--image", "-i", help="Image, DICOM file, CT/MRI folder or zip, NIfTI, slide or PDF. Repeat."
        ),
    ] = None,
    kind: Annotated[
        str, typer.Option(help="Input kind for --image: auto|cxr|image|ct|mri|wsi|pdf.")
    ] = "auto",
    system: Annotated[
        str | None, typer.Option(help="System text (MedGemma was evaluated with none).")
    ] = None,
    think: Annotated[bool, typer.Option("--think", help="Thinking mode (thought kept apart).")] = False,
    show_thought: Annotated[bool, typer.Option("--show-thought", help="Print the thought (stderr).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result record as JSON.")] = False,
    *,
    settings: ArisSettings,
) -> None:
    """Ask MedGemma a question and stream the answer."""
    t0 = time.perf_counter()
    parts: list[Part] = []
    provenance = []
    if image:
        from aris.inputs import read

        for path in image:
            prepared = read(path, kind=kind)
            parts.extend(prepared.parts)
            provenance.append(prepared.provenance)
            for w in prepared.provenance.warnings:
                err_console.print(f"[yellow]warning:[/] {w}", highlight=False)
    prepare_s = time.perf_counter() - t0
    messages = ([Message.system(system)] if system else []) + [Message("user", [*parts, TextPart(question)])]
    with err_console.status(f"loading {settings.engine} model…"):
        eng = load_engine(settings)
    params = GenerationParams(max_new_tokens=settings.max_new_tokens, think=think)
    try:
        result = generate(
            eng,
            messages,
            params,
            on_piece=None if as_json else print_stream(show_thought),
            provenance=provenance,
            prepare_s=prepare_s,
        )
    finally:
        eng.close()
    if as_json:
        sys.stdout.write(
            result.model_dump_json(indent=2, exclude={"thought"} if not show_thought else None) + "\n"
        )
        return
    print_footer(result)
