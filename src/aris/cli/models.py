"""``aris models`` and ``aris pull``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from aris.cli.app import app, console
from aris.config import ArisSettings
from aris.models import REGISTRY, local_models, pull
from aris.notice import HAI_DEF_TERMS


@app.command("models")
def models_cmd() -> None:
    """List the MedGemma releases and what is available on this machine."""
    settings = ArisSettings()
    local = local_models(settings.models_dir)
    local_ids = {m.id for m in local}
    table = Table(title="MedGemma releases", show_lines=False)
    table.add_column("model", no_wrap=True)  # ids are copied into commands: never break them
    for col in ("size", "inputs", "engine", "thinking", "local"):
        table.add_column(col)
    for info in REGISTRY.values():
        inputs = "+".join(info.modalities)
        engine = info.engine + (f" ({', '.join(info.quants)})" if info.quants else "")
        table.add_row(
            info.id,
            info.params,
            inputs,
            engine,
            "yes" if info.thinking else "",
            "yes" if info.id in local_ids else "",
        )
    console.print(table)
    other = [m for m in local if m.id not in REGISTRY]
    if other:
        t2 = Table(title="Other local models")
        t2.add_column("name")
        t2.add_column("where")
        t2.add_column("source")
        for m in other:
            t2.add_row(m.id, str(m.path), m.source)
        console.print(t2)
    else:
        console.print(
            f"[dim]No other local models (HF cache, or GGUF files / folders in {settings.models_dir}).[/]"
        )
    console.print(f"[dim]{HAI_DEF_TERMS}[/]")


@app.command("pull")
def pull_cmd(
    model: Annotated[str, typer.Argument(help="HF repo id, e.g. google/medgemma-1.5-4b-it or a -GGUF repo.")],
    quant: Annotated[
        str, typer.Option(help="Quant level for GGUF builds (the mmproj projector comes too).")
    ] = "Q4_K_M",
    token: Annotated[
        str | None, typer.Option(help="Hugging Face token for gated repos (or env HF_TOKEN).")
    ] = None,
) -> None:
    """Download a model explicitly (resumable, with progress). Nothing else ever downloads."""
    settings = ArisSettings()
    console.print(f"[dim]{HAI_DEF_TERMS}[/]")
    path = pull(model, settings.models_dir, quant=quant, token=token)
    console.print(f"[green]done:[/] {path}")
