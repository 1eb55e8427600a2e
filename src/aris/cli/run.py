"""``aris run TASK INPUT...``: a clinical task end to end, answer streamed, structured result shown.

One subcommand per registered task (built-ins and plugins alike), its flags generated from the task's
``Options`` model; every subcommand runs through :func:`aris.runner.run_task`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from aris.cli.app import app, console, err_console
from aris.cli.ask import print_stream
from aris.cli.options import engine_options, model_flags, parse_pair, split_list, with_flags
from aris.config import ArisSettings
from aris.context import Models
from aris.engines import load_engine
from aris.errors import ConfigError
from aris.result import Result
from aris.tasks import TASKS, Task, get_task

run_app = typer.Typer(
    name="run",
    help="Run a clinical task: the answer streamed, the structured result as a table, the notice always.",
    no_args_is_help=True,
)
app.add_typer(run_app)

# Flags every task command has; a task option of the same name is reached with -o instead.
COMMON = {"question", "kind", "out", "as_json", "show_thought", "script", "option", "inputs"}


def parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` with JSON values where they parse (true, 3, ["a"]), else the string."""
    return parse_pair(text)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        if all(isinstance(v, str | int | float) for v in value):
            return ", ".join(_cell(v) for v in value) or "—"
        return f"{len(value)} item(s) (see --json)"
    if isinstance(value, dict):
        return (
            ", ".join(f"{k}: {_cell(v)}" for k, v in value.items())
            if len(value) <= 8
            else f"{len(value)} fields"
        )
    return "—" if value in (None, "") else str(value)


def _nested(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and any(isinstance(v, dict | list) for v in value)
    )


def _rows_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(title=title, show_lines=False)
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*(Text(_cell(row.get(c))) for c in columns))  # model text is not markup
    return table


def print_result(result: Result) -> None:
    """The structured result as tables: the scalar fields, then any list of records as its own table."""
    parsed = result.parsed
    if isinstance(parsed, dict):
        fields = Table(title=f"{result.task}: structured result")
        fields.add_column("field", style="bold")
        fields.add_column("value", overflow="fold")
        nested: list[tuple[str, list[dict[str, Any]]]] = []
        for k, v in parsed.items():
            if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                nested.append((k, v))
            else:
                fields.add_row(k, Text(_cell(v)))
        console.print(fields)
        for name, rows in nested:
            columns = [c for c in rows[0] if not _nested(rows[0][c]) or c == "box_px"]
            if name == "series":
                columns = ["name", "unit", "n", "latest", "change_since_last", "slope_per_year", "flags"]
            console.print(_rows_table(name, rows, columns))
    if result.warnings:
        for w in result.warnings:
            err_console.print(f"[yellow]warning:[/] {w}", highlight=False, markup=False)
    if result.errors:
        err_console.print(
            "[bold yellow]The reply did not validate"
            + (" (even after one repair)" if len(result.steps) > 1 else "")
            + ":[/]",
            highlight=False,
        )
        for e in result.errors:
            err_console.print(f"  - {e}", highlight=False, markup=False)


def print_footer(result: Result) -> None:
    steps = f" · {len(result.steps)} calls" if len(result.steps) > 1 else ""
    repaired = " · repaired once" if result.repaired else ""
    console.print(
        f"[dim]model: {result.model} ({result.engine}) · prompt {result.prompt_sha256[:12]}{steps}{repaired} · "
        f"{result.timings.total_s:.1f}s[/]"
    )
    console.print(f"[bold yellow]{result.notice}[/]")


def _script_lines(path: Path) -> list[str]:
    try:
        return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the script ({e.strerror})") from None


def terminal_asker(script: Path | None, as_json: bool) -> Callable[[str], str | None]:
    """Answers to a conversing task's questions: from the script file, else the terminal (stdin)."""
    lines = _script_lines(script) if script else None

    def ask(question: str) -> str | None:
        if not as_json:
            console.print(Text.assemble(("Aris: ", "bold cyan"), question))
        if lines is not None:
            answer = lines.pop(0) if lines else None
        else:
            try:
                answer = input("> " if sys.stdin.isatty() else "")
            except EOFError:
                answer = None
        if answer is not None and not as_json and (lines is not None or not sys.stdin.isatty()):
            console.print(Text.assemble(("Patient: ", "bold"), answer))
        return answer

    return ask


def show_event(event: dict[str, Any]) -> None:
    if event.get("type") == "escalation":
        err_console.print(
            Panel(
                f"{event['action']}\n\n[dim]Why: {'; '.join(event.get('why') or [])}[/]",
                title="[bold]URGENT[/]",
                border_style="bold red",
            )
        )


def run_one(
    t: Task,
    inputs: list[Path] | None,
    *,
    question: str | None,
    kind: str | None,
    out: Path | None,
    as_json: bool,
    show_thought: bool,
    script: Path | None,
    options: dict[str, Any],
    settings: ArisSettings,
) -> None:
    """The body shared by every task command."""
    from aris.runner import check_options, run_task

    check_options(t, options)  # a bad option fails now, before a model loads
    generator = None
    if "generator" in t.needs:
        with err_console.status(f"loading {settings.engine} model…"):
            generator = load_engine(settings)
    models = Models(settings, generator=generator)
    conversing = "answers" in t.Options.model_fields and not options.get("answers")
    try:
        if not as_json and not conversing:
            console.print("[dim]── answer ──[/]")
        result = run_task(
            t,
            [str(p) for p in inputs or []],
            models=models,
            settings=settings,
            question=question,
            kind=kind,
            options=options,
            on_token=None if as_json else print_stream(show_thought),
            files_dir=out,
            ask=terminal_asker(script, as_json) if conversing else None,
            on_event=show_event,
        )
    finally:
        models.close()
        if generator is not None:
            generator.close()
    record = result.model_dump_json(indent=2, exclude=None if show_thought else {"thought"})
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(record + "\n")
    if as_json:
        sys.stdout.write(record + "\n")
        return
    sys.stdout.write("\n")
    print_result(result)
    if out is not None:
        console.print(f"[dim]saved: {out / 'result.json'}[/]", highlight=False)
    print_footer(result)


def task_command(name: str) -> Callable[..., None]:
    """The typer command for one task: common flags, the task's own flags, the engine flags."""
    t = get_task(name)
    own = model_flags(t.Options)
    own = {k: v for k, v in own.items() if k not in COMMON}
    lists = {k for k, (_, is_list) in own.items() if is_list}

    def command(
        inputs: Annotated[
            list[Path] | None,
            typer.Argument(
                help="Input files or folders (DICOM, series folder/zip, NIfTI, slide, PDF, FHIR, image); "
                "several files for a one-input task are one series."
            ),
        ] = None,
        question: Annotated[
            str | None, typer.Option("--question", "-q", help="The question (asked last).")
        ] = None,
        kind: Annotated[
            str | None, typer.Option(help="Input kind: auto|cxr|image|ct|mri|wsi|pdf|fhir.")
        ] = None,
        out: Annotated[
            Path | None, typer.Option("--out", help="Folder for result.json and files (overlay.png).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result record as JSON.")] = False,
        show_thought: Annotated[
            bool, typer.Option("--show-thought", help="Print the thought (stderr).")
        ] = False,
        script: Annotated[
            Path | None,
            typer.Option(help="For a task that asks questions (intake): a file of answers, one a line."),
        ] = None,
        option: Annotated[
            list[str] | None,
            typer.Option("--option", "-o", help="Any task option as KEY=VALUE (JSON values parse). Repeat."),
        ] = None,
        *,
        settings: ArisSettings,
        task_options: dict[str, Any],
    ) -> None:
        options = dict(parse_option(o) for o in option or [])
        options.update(task_options)
        run_one(
            t,
            inputs,
            question=question,
            kind=kind,
            out=out,
            as_json=as_json,
            show_thought=show_thought,
            script=script,
            options=options,
            settings=settings,
        )

    def collect(values: dict[str, Any]) -> dict[str, Any]:
        return {
            "task_options": {
                k: (split_list(v) if k in lists else v) for k, v in values.items() if v is not None
            }
        }

    command.__doc__ = t.description
    return engine_options(
        with_flags(command, {k: ann for k, (ann, _) in own.items()}, collect, ("task_options",))
    )


for _name in TASKS.names():
    run_app.command(_name, help=get_task(_name).description)(task_command(_name))
