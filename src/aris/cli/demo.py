"""``aris demo``: what Aris does, on five bundled studies, in under a minute.

1. Each study (a human chest radiograph, a CT series, a slide region, a lab-report PDF, a FHIR record)
   is turned into exactly what MedGemma sees, with the recipe applied, the warnings and the token cost,
   shown as one table and written as files a person can open (``--out``).
2. One real generation for the text path and one for the image path, through real engines, on
   stand-in models labelled as such (no MedGemma weights needed); with ``--model`` every study gets
   MedGemma's answer instead.
3. ``--ui`` serves the same studies in the web UI on 127.0.0.1 until Ctrl-C.

Every generation goes through :func:`aris.runner.run_task`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from aris.cli.app import app, console, err_console
from aris.cli.options import engine_options
from aris.config import ArisSettings
from aris.notice import NOTICE

if TYPE_CHECKING:
    from aris.demo.answers import Answer
    from aris.demo.studies import Prepared
    from aris.engines.base import Engine

STUDIES_JSON = "studies.json"
ANSWERS_JSON = "answers.json"
DEFAULT_CTX = 8192  # below this an input needs a larger engine context than the default


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def _dump(data: Any, path: Path) -> None:
    path.write_text(
        json.dumps(data, indent=2, default=_json_default, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def _standin_mode(settings: ArisSettings) -> bool:
    """No model named for an engine that needs one: the stand-ins run instead of MedGemma."""
    return settings.model is None and settings.engine in ("transformers", "llamacpp")


def _studies_table(prepared: list[Any]) -> Table:
    from aris.demo.studies import recipe_summary, sees_summary

    table = Table(
        title="[bold]Aris demo[/] · five bundled studies, as MedGemma sees them [dim](docs/recipes.md)[/]",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        title_justify="left",
        expand=True,
    )
    table.add_column("study", max_width=20)
    table.add_column("MedGemma sees", max_width=19)
    table.add_column("recipe applied · [yellow]warnings[/]", ratio=1)
    table.add_column("tokens", justify="right", no_wrap=True)
    for p in prepared:
        tokens = p.tokens["total"]
        recipe = escape(recipe_summary(p))
        for w in p.input.provenance.warnings:
            recipe += f"\n[yellow]⚠ {escape(w)}[/]"
        cost = f"{tokens:,}" + ("\n[dim]≥32K ctx[/]" if tokens > DEFAULT_CTX else "")
        table.add_row(
            f"[bold]{p.study.title}[/]\n[dim]{escape(p.study.origin)}[/]",
            escape(sees_summary(p)),
            recipe,
            cost,
        )
    return table


def _answers_grid(answers: list[Any], standin: bool) -> Table:
    from aris.demo.answers import computed_summary, verdict

    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    for a in answers:
        r = a.result
        path = ("text" if a.study.kind == "fhir" else "image") if standin else a.study.title
        who = f"[bold magenta]STAND-IN:[/] {escape(a.model)}" if a.standin else escape(a.model)
        engine = f", {r.engine}" if r is not None else ""
        grid.add_row(f"[bold]{escape(path)}[/]", f"{a.study.task} on the {a.study.title} — {who}{engine}")
        computed = computed_summary(a)
        if computed:
            grid.add_row("", f"[green]Aris computed:[/] {escape(computed)}")
        if r is not None:
            wrote = Text.from_markup("[cyan]model wrote:[/] ", overflow="ellipsis")
            wrote.append(" ".join((r.text or "(nothing)").split()))
            wrote.no_wrap = True
            grid.add_row("", wrote)
        ok = r is not None and not r.errors and a.error is None
        took = f" · {r.timings.total_s:.1f}s" if r is not None else ""
        grid.add_row("", f"[{'green' if ok else 'yellow'}]{escape(verdict(a))}[/][dim]{took}[/]")
    return grid


def _artefact_line(out: Path, names: list[str]) -> str:
    return f"[bold]Written to {escape(str(out))}/[/]: " + " ".join(escape(n) for n in names)


@app.command("demo")
@engine_options
def demo_cmd(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the images, JSON and input files the demo writes.")
    ] = Path("aris-demo"),
    ui: Annotated[
        bool,
        typer.Option("--ui", help="Serve the same studies in the web UI on 127.0.0.1 until Ctrl-C."),
    ] = False,
    *,
    settings: ArisSettings,
) -> None:
    """Show what Aris does on five bundled studies; with --model, MedGemma's answers for each."""
    from aris.demo.answers import STANDIN_TOKENS
    from aris.demo.studies import write_inputs

    t0 = time.perf_counter()
    standin = _standin_mode(settings)
    if not standin and settings.engine == "llamacpp" and "n_ctx" not in settings.model_fields_set:
        settings.n_ctx = 32768  # the CT study's 85 slices need it
    max_new = settings.max_new_tokens if "max_new_tokens" in settings.model_fields_set else None
    if standin and max_new is None:
        max_new = STANDIN_TOKENS
    # A model that cannot load fails now, before any work; the stand-ins load when their turn comes.
    engine = _load(settings, standin=standin, ui=ui)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with err_console.status("writing the demo studies…"):
            inputs = write_inputs(out / "inputs")
        if ui:
            assert engine is not None
            _serve_ui(engine, settings, inputs, out, standin=standin, max_new_tokens=max_new)
            return
        prepared = _prepare_all(inputs, out)
        console.print(_studies_table(prepared))
        answers = _generate(prepared, engine, settings, max_new)
    finally:
        if engine is not None:
            engine.close()
    if standin:
        from aris.demo.answers import STANDIN_NOTICE

        console.print(f"[bold]Two real generations, capped at {max_new} tokens[/]")
        console.print(_answers_grid(answers, standin))
        console.print(f"[magenta]{STANDIN_NOTICE}[/]", highlight=False)
    else:
        assert engine is not None
        console.print(f"[bold]{escape(engine.model_id)}'s answers[/] [dim]({engine.kind})[/]")
        console.print(_answers_grid(answers, standin))
    _write_records(out, prepared, answers, standin)
    names = [a.name for p in prepared for a in p.artefacts] + [STUDIES_JSON, ANSWERS_JSON, "inputs/"]
    console.print(_artefact_line(out, names), highlight=False)
    console.print(
        f"Try: [bold]aris run cxr-report {escape(str(out / 'inputs' / 'chest_cr.dcm'))}[/] · "
        "[bold]aris demo --ui[/] · [bold]aris demo --model google/medgemma-1.5-4b-it[/] "
        f"[dim](done in {time.perf_counter() - t0:.0f}s)[/]",
        highlight=False,
    )
    console.print(f"[bold yellow]{NOTICE}[/]", highlight=False)


def _load(settings: ArisSettings, *, standin: bool, ui: bool) -> Engine | None:
    """The user's model, or for ``--ui`` the image stand-in (it serves text too); else None."""
    if standin and not ui:
        return None
    if standin:
        from aris.demo.answers import image_standin

        with err_console.status("loading the stand-in model (tiny Gemma 3 VLM)…"):
            return image_standin(settings.home)
    from aris.engines import load_engine

    with err_console.status(f"loading {settings.model or 'the model'} ({settings.engine})…"):
        return load_engine(settings)


def _prepare_all(inputs: dict[str, Path], out: Path) -> list[Prepared]:
    from aris.demo.studies import STUDIES, prepare_study, write_artefacts

    prepared = []
    with err_console.status("preparing the studies…") as status:
        for s in STUDIES:
            status.update(f"preparing the {s.title.lower()}…")
            p = prepare_study(s, inputs[s.key])
            write_artefacts(p, out)
            prepared.append(p)
    return prepared


def _generate(
    prepared: list[Prepared], engine: Engine | None, settings: ArisSettings, max_new: int | None
) -> list[Answer]:
    from aris.demo.answers import model_answers, standin_answers

    with err_console.status("generating…") as status:
        if engine is None:
            return standin_answers(
                {p.study.key: p for p in prepared},
                settings.home,
                max_new_tokens=max_new or 32,
                on_step=status.update,
            )
        counter = {"n": 0}

        def tick(kind: str, text: str) -> None:
            counter["n"] += 1
            if counter["n"] % 8 == 0:
                status.update(f"generating… {counter['n']} pieces streamed")

        return model_answers(prepared, engine, max_new_tokens=max_new, on_step=status.update, on_token=tick)


def _write_records(out: Path, prepared: list[Prepared], answers: list[Answer], standin: bool) -> None:
    from aris.demo.studies import recipe_summary, sees_summary

    _dump(
        {
            "studies": [
                {
                    "key": p.study.key,
                    "title": p.study.title,
                    "origin": p.study.origin,
                    "input": str(p.source.relative_to(out)),
                    "kind": p.input.kind,
                    "task": p.study.task,
                    "recipe": recipe_summary(p),
                    "sees": sees_summary(p),
                    "images": len(p.input.arrays),
                    "labels": p.input.labels,
                    "tokens": p.tokens,
                    "warnings": p.input.provenance.warnings,
                    "details": p.input.provenance.details,
                    "artefacts": [a.name for a in p.artefacts],
                }
                for p in prepared
            ]
        },
        out / STUDIES_JSON,
    )
    _dump(
        {
            "standin": standin,
            "answers": [
                {
                    "study": a.study.key,
                    "task": a.study.task,
                    "model": a.model,
                    "standin": a.standin,
                    "error": a.error,
                    "result": a.result.model_dump(mode="json") if a.result is not None else None,
                }
                for a in answers
            ],
        },
        out / ANSWERS_JSON,
    )


def _serve_ui(
    engine: Engine,
    settings: ArisSettings,
    inputs: dict[str, Path],
    out: Path,
    *,
    standin: bool,
    max_new_tokens: int | None,
) -> None:
    from aris.demo.answers import IMAGE_STANDIN
    from aris.demo.ui import Uploaded, serve

    label = f"STAND-IN: {IMAGE_STANDIN}" if standin else engine.model_id

    def ready(base_url: str, uploaded: list[Uploaded]) -> None:
        console.print(
            f"[bold]Aris web UI[/] with the demo studies: [bold cyan]{base_url}/ui/[/]", highlight=False
        )
        for u in uploaded:
            console.print(f"  {u.study.title:<13} {u.link}", highlight=False, soft_wrap=True)
        console.print(
            f"Each study also ran once as a job (the Jobs list) on {escape(label)}"
            + (f", capped at {max_new_tokens} tokens" if max_new_tokens else "")
            + ". Ctrl-C stops the server.",
            highlight=False,
        )
        console.print(f"[bold yellow]{NOTICE}[/]", highlight=False)

    errors: list[str] = []

    def failed(message: str) -> None:
        errors.append(message)
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)

    serve(
        engine,
        settings,
        inputs,
        out / "server",
        max_new_tokens=max_new_tokens,
        on_ready=ready,
        on_error=failed,
    )
    if errors:
        raise typer.Exit(1)
