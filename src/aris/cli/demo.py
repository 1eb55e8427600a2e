"""``aris demo``: the main job end to end on bundled material.

A real chest radiograph (DICOM) -> the exact MedGemma CXR-report prompt -> a real engine ->
a parsed, validated result with the model card's position. With no MedGemma weights here it
runs a tiny random Gemma 3 VLM built locally and says so; with ``--model`` it is MedGemma.
"""

from __future__ import annotations

import time
from importlib.resources import files
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.table import Table

from aris.cli.app import app, console, err_console
from aris.cli.ask import print_stream
from aris.cli.options import engine_options
from aris.config import ArisSettings
from aris.engines import load_engine
from aris.notice import DEMO_NOTICE


def demo_image() -> Path:
    return Path(str(files("aris.demo").joinpath("chest_dx.dcm")))


@app.command("demo")
@engine_options
def demo_cmd(
    image: Annotated[
        Path | None, typer.Option(help="Another chest X-ray (DICOM/PNG) instead of the bundled one.")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Longest reply.")] = 256,
    *,
    settings: ArisSettings,
) -> None:
    """Draft a chest X-ray report from a bundled real radiograph, end to end."""
    from aris.inputs import read
    from aris.runner import run_task

    demo_model = settings.model is None and settings.engine == "transformers"
    if demo_model:
        from aris.demo.tiny import build_tiny_vlm

        with err_console.status("building the tiny demo model (first run only, under a minute)…"):
            settings.model = str(build_tiny_vlm(settings.home))
    path = image or demo_image()
    t0 = time.perf_counter()
    prepared = read(path, kind="cxr")
    prepare_s = time.perf_counter() - t0
    img = prepared.images[0]
    details = prepared.provenance.details
    info = Table.grid(padding=(0, 2))
    info.add_row(
        "input", "bundled chest radiograph (DX, highdicom test data)" if image is None else path.name
    )
    info.add_row(
        "prepared",
        f"{img.width}×{img.height} RGB · "
        + ", ".join(
            f"{k}={v}" for k, v in details.items() if k in ("modality", "photometric", "window", "inverted")
        ),
    )
    info.add_row(
        "model",
        ("tiny-gemma3-vlm (DEMO: random weights, built locally)" if demo_model else str(settings.model))
        + f" · engine {settings.engine}",
    )
    console.print(Panel(info, title="Aris demo: chest X-ray report draft", expand=False))
    if demo_model:
        console.print(f"[bold magenta]{DEMO_NOTICE}[/]")
    with err_console.status(f"loading {settings.engine} model…"):
        eng = load_engine(settings)
    console.print("[dim]── answer ──[/]")
    try:
        result = run_task(
            "cxr-report",
            [prepared],
            models=eng,
            max_new_tokens=max_new_tokens,
            on_token=print_stream(False),
        )
    finally:
        eng.close()
    result.timings.prepare_s = prepare_s
    result.demo = demo_model
    console.print()
    if result.parsed is not None:
        table = Table(title="structured result")
        table.add_column("field")
        table.add_column("value")
        for k, v in result.parsed.items() if isinstance(result.parsed, dict) else []:
            table.add_row(str(k), str(v))
        console.print(table)
    elif result.errors:
        console.print(
            "[yellow]The reply did not validate as a report"
            + (" (expected: the demo model's words are noise)" if demo_model else "")
            + ":[/] "
            + "; ".join(result.errors[:2]),
            highlight=False,
        )
    console.print(
        f"[dim]model: {result.model} · engine: {result.engine} · prompt sha256 {result.prompt_sha256[:12]} · "
        f"{result.timings.total_s:.1f}s[/]"
    )
    if demo_model:
        console.print(f"[bold magenta]{DEMO_NOTICE}[/]")
    console.print(f"[bold yellow]{result.notice}[/]")
